"""``python -m pydevts`` is the ``pydevts`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
