"""Benchmarks: runnable scripts (``bench_*.py``) printing figures, not pass/fail tests.

pytest does not collect them (its pattern is ``test_*.py``); see README.md in this folder.
"""
