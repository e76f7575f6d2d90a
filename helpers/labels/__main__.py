"""``python -m helpers.labels ...`` (see :mod:`helpers.labels`)."""

import sys

from helpers.labels.cli import main

sys.exit(main())
