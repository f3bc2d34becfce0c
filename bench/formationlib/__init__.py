"""Helpers of ``bench/formation_timeline.py``: where the time of a cluster's formation goes."""
