"""`python -m prunekit ...` (and `torchrun -m prunekit ...`): the command line."""

import sys

from prunekit.cli import main

sys.exit(main())
