"""The ``pydevts`` command line.

Layer: the top; imports the node, the client and everything below, and nothing
imports it but ``python -m pydevts``.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
