"""``python -m rayflow.cli``: the ``rayflow`` command."""

import sys

from rayflow.cli import main

sys.exit(main())
