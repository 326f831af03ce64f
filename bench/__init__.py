"""Benchmarks: `python -m bench.<name>`; each prints a table of ratios against a baseline
measured in the same run. Not part of the test suite."""
