"""Make ``promtest`` (helpers shared by these tests) importable under ``--import-mode=importlib``;
run every async test on asyncio and on trio (also when these tests run on their own)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
