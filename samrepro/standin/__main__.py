"""`python -m samrepro.standin train|table|check …`."""

import sys

from samrepro.standin import main

sys.exit(main())
