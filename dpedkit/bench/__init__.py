"""Benchmarks behind ``dpedkit bench ...``: each returns a dict of figures measured side by side in one run."""
