"""``python -m porter_bundle``."""

import sys

from porter_bundle.cli import main

sys.exit(main())
