"""pydevts-litemesh: a small full-mesh router, written against pydevts' public API only.

``Node(7000, router="litemesh")`` once installed; see README.md for the design.
"""

from __future__ import annotations

from .router import CONTROL, LiteMeshRouter, keeps

__all__ = ["CONTROL", "LiteMeshRouter", "keeps"]
