import sys

from facegcn.cli import main

sys.exit(main())
