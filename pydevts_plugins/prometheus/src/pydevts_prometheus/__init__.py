"""pydevts-prometheus: a node's metrics for Prometheus, served at ``/metrics``; a Grafana dashboard.

Enable it by name::

    Node(7000, connection_plugins=["prometheus"], plugin_options={"prometheus": {"port": 9464}})

or ``pydevts node 7000 --plugin prometheus --plugin-option prometheus.port=9464``;
``node.plugin("prometheus")`` is the :class:`PrometheusPlugin` (its
``registry``, the bound ``port``, ``url``). :data:`METRICS` lists every
metric it exports; :func:`dashboard_path` is the Grafana dashboard shipped
with it. See the distribution's README for the options and bounds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydevts.plugins import lazy_exports

if TYPE_CHECKING:
    from .collect import METRICS
    from .dashboard import dashboard_path, load_dashboard
    from .exporter import PrometheusPlugin

__version__ = "0.3.0"

__all__ = ["METRICS", "PrometheusPlugin", "dashboard_path", "load_dashboard"]

# Imported on first use: plugin discovery imports this package at every node start,
# and prometheus_client is not needed until a node enables the plugin.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "METRICS": "collect",
        "PrometheusPlugin": "exporter",
        "dashboard_path": "dashboard",
        "load_dashboard": "dashboard",
    },
)
