"""``python -m worker``: see :mod:`worker.app`."""

import sys

from worker.app import main

sys.exit(main())
