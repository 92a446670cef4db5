"""``python -m flowbus_worker``: see :mod:`flowbus_worker.app`."""

import sys

from flowbus_worker.app import main

sys.exit(main())
