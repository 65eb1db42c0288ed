"""Benchmarks on the testbed: hpcbridge against the stock tools, in the same run.

Run one with ``python -m bench.<name>`` (e.g. ``python -m bench.poller_load``); each
prints its figures, one ratio a line, and writes JSON into ``docs/benchmarks/``.
"""
