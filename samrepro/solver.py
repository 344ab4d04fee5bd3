"""`samrepro.solver`: the same module as `samrepro.method.solver` (a name outside checks rely on)."""

import sys

from samrepro.method import solver

sys.modules[__name__] = solver
