"""``python -m benchmarks``: run the suite (options: ``python -m benchmarks --help``)."""

import sys

from benchmarks.run import main

sys.exit(main())
