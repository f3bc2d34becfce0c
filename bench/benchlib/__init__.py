"""Benchmark harness for pydevts: driver helpers (procs, natsd, rows, report) and peer programs."""
