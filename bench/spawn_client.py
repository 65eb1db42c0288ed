"""Timing spawns through a hub's REST API (for :mod:`bench.spawn`), any spawner.

A spawn is timed from the ``POST`` to the moment the hub reports the server ready: the
``POST`` itself when it answers 201 (JupyterHub waits up to ``slow_spawn_timeout``, 10 s,
before answering 202), else the ``ready`` event of the server's progress stream. No
polling, so eight or fifty spawns in flight put no extra load on the hub.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import requests

from bench.hubapi import HubApi
from slurm_testbed import faults
from slurm_testbed.cluster import Testbed


@dataclass
class Spawn:
    user: str
    server: str = ""
    #: ready | pending (still queued at the deadline) | refused (4xx) | failed
    outcome: str = ""
    seconds: float | None = None
    status: int = 0
    message: str = ""

    def row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in ("", None)}


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (``q`` in 0..100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)


def summary(spawns: list[Spawn]) -> dict:
    ready = [s.seconds for s in spawns if s.outcome == "ready" and s.seconds is not None]
    counts: dict[str, int] = {}
    for s in spawns:
        counts[s.outcome] = counts.get(s.outcome, 0) + 1
    return {"n": len(spawns), "outcomes": counts, "p50_s": percentile(ready, 50),
            "p95_s": percentile(ready, 95), "min_s": min(ready, default=None),
            "max_s": max(ready, default=None)}


def slots(n: int, caps: dict[str, int], prefix: str) -> list[tuple[str, str]]:
    """``n`` (user, named server) pairs round-robin over the users, each at most its cap."""
    pairs: list[tuple[str, str]] = []
    used = dict.fromkeys(caps, 0)
    while len(pairs) < n:
        before = len(pairs)
        for user, cap in caps.items():
            if len(pairs) < n and used[user] < cap:
                used[user] += 1
                pairs.append((user, f"{prefix}{used[user]}"))
        if len(pairs) == before:
            raise ValueError(f"{n} servers do not fit the per-user caps {caps}")
    return pairs


class Driver:
    """One hub (its name, URL, admin token) and the ``user_options`` of every spawn."""

    def __init__(self, name: str, url: str, token: str, options: dict | None = None) -> None:
        self.name, self.url, self.token = name, url, token
        self.options = options or {}
        self._local = threading.local()

    @property
    def api(self) -> HubApi:
        """One API session per thread (a requests.Session is not shared safely)."""
        if not hasattr(self._local, "api"):
            self._local.api = HubApi(self.url, self.token)
        return self._local.api

    def spawn(self, user: str, server: str = "", timeout: float = 180) -> Spawn:
        started = time.monotonic()
        result = Spawn(user, server)
        try:
            r = self.api.spawn(user, self.options, server)
        except requests.RequestException as exc:
            result.outcome, result.message = "failed", f"POST: {exc}"
            return result
        result.status = r.status_code
        if r.status_code == 201:
            result.outcome, result.seconds = "ready", round(time.monotonic() - started, 3)
        elif r.status_code == 202:
            self._follow(result, started, started + timeout)
        else:
            result.outcome = "refused" if 400 <= r.status_code < 500 else "failed"
            result.message = _message(r)
        return result

    def _follow(self, result: Spawn, started: float, deadline: float) -> None:
        """Read the server's progress stream until ready, failed, or the deadline."""
        path = f"/users/{result.user}/server" + (f"s/{result.server}" if result.server else "")
        result.outcome = "pending"
        try:
            with self.api.session.get(f"{self.url}/hub/api{path}/progress", stream=True,
                                      timeout=(10, max(1.0, deadline - time.monotonic()))
                                      ) as r:
                for line in r.iter_lines(decode_unicode=True):
                    if time.monotonic() > deadline:
                        return  # JupyterHub's keepalives never let the read time out
                    if not line or not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if event.get("ready"):
                        result.outcome = "ready"
                        result.seconds = round(time.monotonic() - started, 3)
                        return
                    if event.get("failed"):
                        result.outcome, result.message = "failed", event.get("message", "")
                        return
                    result.message = event.get("message", "")
        except requests.RequestException:
            pass  # the read timed out at the deadline: still pending
        model = self.api.server(result.user, result.server)
        if model.get("ready"):  # the stream ended without its ready event
            result.outcome, result.seconds = "ready", round(time.monotonic() - started, 3)
        elif not model:
            result.outcome = "failed"  # the stream ended because the server went away

    def spawn_many(self, pairs: list[tuple[str, str]], timeout: float = 180) -> list[Spawn]:
        """All at once (threads released together); results in the order of ``pairs``."""
        barrier = threading.Barrier(len(pairs), timeout=120)

        def one(pair: tuple[str, str]) -> Spawn:
            self.api.request("GET", "/")  # open the connection before the start line
            barrier.wait()
            return self.spawn(*pair, timeout=timeout)

        with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
            return list(pool.map(one, pairs))

    def ready(self, pairs: list[tuple[str, str]]) -> int:
        models = {u: self.api.request("GET", f"/users/{u}").json() for u, _ in pairs}
        return sum(bool(models[u].get("servers", {}).get(s, {}).get("ready")) for u, s in pairs)

    def wait_all_ready(self, pairs: list[tuple[str, str]], timeout: float = 180) -> float:
        """Seconds until every server of ``pairs`` is reported ready (polled every 0.25 s)."""
        started = time.monotonic()
        while self.ready(pairs) < len(pairs):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{self.name}: not every server ready in {timeout:.0f} s")
            time.sleep(0.25)
        return round(time.monotonic() - started, 3)

    def stop_servers(self, pairs: list[tuple[str, str]], timeout: float = 90
                     ) -> list[tuple[str, str]]:
        """Stop every server of ``pairs`` through the hub; those it still lists after
        ``timeout`` (all waited for together) are returned."""
        with ThreadPoolExecutor(max_workers=min(16, max(1, len(pairs)))) as pool:
            list(pool.map(lambda p: self.api.stop(*p), pairs))
        deadline = time.monotonic() + timeout
        left = list(pairs)
        while left:
            users = {u: self.api.request("GET", f"/users/{u}").json()
                     for u in {u for u, _ in left}}
            left = [(u, s) for u, s in left if s in users[u].get("servers", {})]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(1)
        for user, server in left:
            print(f"{self.name}: {user}/{server} did not stop in {timeout:.0f} s", flush=True)
        return left

    def stop_all(self, tb: Testbed, pairs: list[tuple[str, str]], timeout: float = 90,
                 leave: int = 0) -> None:
        """Stop every server of ``pairs`` and wait until the queue holds no more than
        ``leave`` jobs (0: empty again; what is left then is cancelled)."""
        self.stop_servers(pairs, timeout)
        if leave:
            wait_queue_at_most(tb, leave, timeout)
        else:
            wait_queue_empty(tb, timeout)


def left_after(tb: Testbed, seconds: float) -> list[str]:
    """Jobs still queued after up to ``seconds`` of waiting for the queue to empty."""
    deadline = time.monotonic() + seconds
    while (left := queue(tb)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def queue(tb: Testbed) -> list[str]:
    """``JOBID STATE REASON USER`` of every job in the queue (as root on the controller)."""
    out = tb.exec("ctl", ["squeue", "-h", "-o", "%i %T %r %u"], timeout=60).stdout.decode()
    return [line for line in out.splitlines() if line.strip()]


def wait_queue_empty(tb: Testbed, timeout: float = 60) -> None:
    """Until no job is left (an idle cluster); cancel what is left after ``timeout``."""
    deadline = time.monotonic() + timeout
    cancelled = False
    while left := queue(tb):
        if time.monotonic() > deadline:
            if cancelled:
                raise TimeoutError(f"jobs still queued after cancelling them: {left}")
            print(f"jobs left after {timeout:.0f} s, cancelling them: {left}", flush=True)
            faults.cancel_all(tb)
            cancelled, deadline = True, time.monotonic() + 30
        time.sleep(0.5)


def wait_queue_at_most(tb: Testbed, n: int, timeout: float = 60) -> None:
    """Until the queue holds no more than ``n`` jobs (stopped servers' jobs gone)."""
    deadline = time.monotonic() + timeout
    while len(queue(tb)) > n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"more than {n} jobs still queued after {timeout:.0f} s")
        time.sleep(0.5)


def _message(r: requests.Response) -> str:
    try:
        return str(r.json().get("message", ""))[:300]
    except ValueError:
        return r.text[:300]
