"""``python -m diffcontract.cli``: the console script ``diffcontract``."""

import sys

from . import main

sys.exit(main())
