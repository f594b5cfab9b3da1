"""Reliability: the chaos run (`make chaos`) and its short variant inside `make test`."""
