"""``python -m sealed_results.cli``."""

import sys

from sealed_results.cli import main

sys.exit(main())
