"""A randomized fault suite: random interleavings of spawns, stops, hub kills, scheduler
and login-node outages, node crashes, forged job names and refused requests against the
testbed and a real JupyterHub, with the shared design's invariants checked after every
step. ``python -m tests.chaos --help``; docs/architecture.md ("Invariants under faults").
"""
