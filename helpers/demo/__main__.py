"""``python -m helpers.demo [--out DIR] [--seed N] [--force] [--workers N] [--pack]``."""

import sys

from helpers.demo.cli import main

sys.exit(main())
