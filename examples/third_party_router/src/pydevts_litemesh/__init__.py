"""pydevts-litemesh: a small full-mesh router, written against pydevts' public API only.

``Node(7000, router="litemesh")`` once installed; see README.md for the design.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .router import CONTROL, LiteMeshRouter

__all__ = ["CONTROL", "LiteMeshRouter"]

# Imported on first use: plugin discovery imports this package at every node start.
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "router"))
