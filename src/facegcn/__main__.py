"""``python -m facegcn``: the ``facegcn`` command."""

import sys

from facegcn.cli import main

sys.exit(main())
