"""Seeing a run: its plots (learning curves, confusion, calibration), its one-file HTML report,
and the comparison of several runs."""
