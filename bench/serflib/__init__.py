"""Helpers of ``bench/serf_compare.py``: pydevts and HashiCorp Serf clusters side by side on loopback."""
