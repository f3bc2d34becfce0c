"""The Grafana dashboard shipped with the package (``grafana-dashboard.json``).

Import it in Grafana (Dashboards -> New -> Import -> upload the file): it asks
for a Prometheus data source and shows every node that data source scrapes
(the ``instance`` variable picks some). Print its path with
``python -c "import pydevts_prometheus as p; print(p.dashboard_path())"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_FILE", "dashboard_path", "load_dashboard"]

DASHBOARD_FILE = "grafana-dashboard.json"


def dashboard_path() -> Path:
    """Where the Grafana dashboard JSON of this package is installed."""
    return Path(__file__).with_name(DASHBOARD_FILE)


def load_dashboard() -> dict[str, Any]:
    """The Grafana dashboard, parsed."""
    loaded: dict[str, Any] = json.loads(dashboard_path().read_text(encoding="utf-8"))
    return loaded
