"""Waiting for a hub that `hpcbridge up` (and every test hub) started."""

from __future__ import annotations

import os

from hpcbridge.hubrun import Hub


def test_a_pid_file_jupyterhub_is_rewriting_does_not_end_the_wait(tmp_path, monkeypatch):
    # JupyterHub writes its pid file itself while it starts: read at that moment the file
    # is empty, and the wait gave up on a hub that was coming up (seen under load)
    hub = Hub(tmp_path)
    hub._started = os.getpid()  # alive, as the started hub is
    hub.pidfile.write_text("")
    (tmp_path / "jupyterhub.log").write_text("starting\n")
    answers = iter([False, False, True])
    monkeypatch.setattr(hub, "_answers", lambda url: next(answers))
    monkeypatch.setattr("hpcbridge.hubrun.time.sleep", lambda s: None)
    hub.wait_ready(timeout=60)
    assert next(answers, "asked 3 times") == "asked 3 times"
