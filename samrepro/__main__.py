import sys

from samrepro.commands.cli import main

sys.exit(main())
