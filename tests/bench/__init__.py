"""`make bench`: ratios measured in one run (see tests/bench/run.py)."""
