"""``python -m hadirector``: the same as the ``hadirector`` command."""

import sys

from hadirector.cli import main

sys.exit(main())
