"""Helpers for tests that drive a real JupyterHub (+ configurable-http-proxy) on the testbed."""

from __future__ import annotations

import os

from bench.hubapi import HubApi

__all__ = ["HubApi", "port_offset", "squeue"]


def port_offset() -> int:
    """Added to the test hubs' fixed ports, so that several checkouts can test at once."""
    return int(os.environ.get("HPCBRIDGE_TEST_PORT_OFFSET", "0"))


def squeue(tb, user: str, *fields: str) -> list[list[str]]:
    """Rows of `squeue -u user` with the given format fields, as the user."""
    fmt = "|".join(fields)
    out = tb.login_exec(user, ["squeue", "-h", "-u", user, "-o", fmt]).stdout.decode()
    return [line.split("|") for line in out.splitlines() if line.strip()]
