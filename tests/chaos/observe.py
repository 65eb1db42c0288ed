"""What the chaos suite sees: one snapshot of the cluster, the hub and the users' homes.

Every reading avoids the fields a user controls, or reads them in a format where they
cannot add records: job names only from ``squeue --json`` / ``sacct --json``, the other
queries print ids, users, states and times only. The suite forges job names itself
(``world.inject_forged``), so a line-based reading of names would fool the checker too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import requests

#: states in which a job still waits or runs; COMPLETING is an end under way
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "REQUEUED",
                           "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                           "STAGE_OUT"})


@dataclass(frozen=True)
class Job:
    job_id: str
    user: str
    state: str
    name: str


@dataclass(frozen=True)
class Server:
    """One server of the hub (also a stopped one that keeps state or options)."""

    user: str
    name: str
    ready: bool
    pending: str | None
    state: dict
    user_options: dict

    @property
    def job_id(self) -> str | None:
        return self.state.get("job_id")

    @property
    def active(self) -> bool:
        return self.ready or bool(self.pending)


@dataclass(frozen=True)
class Ended:
    """A job of this run that left the queue, as accounting records it."""

    job_id: str
    user: str
    state: str  # "CANCELLED by 1001", "TIMEOUT", "NODE_FAIL", ...
    submit: float


@dataclass
class Snapshot:
    taken: float  # time.time()
    #: active jobs of every user, None when slurmctld does not answer
    jobs: dict[str, Job] | None
    #: (user, server name) -> server, None when the hub does not answer
    servers: dict[tuple[str, str], Server] | None
    #: user -> env files in ~/.hpcbridge
    env_files: dict[str, set[str]] = field(default_factory=dict)
    #: every job of the watched users since the run began that has left the queue
    ended: dict[str, Ended] = field(default_factory=dict)


def _state(value) -> str:
    # Slurm 22.05 prints a string, 24.11 a list of flags
    if isinstance(value, dict):
        value = value.get("current", "")
    if isinstance(value, list):
        return value[0] if value else ""
    return str(value)


def parse_squeue_json(text: str) -> dict[str, Job]:
    jobs = {}
    for j in json.loads(text).get("jobs", []):
        job = Job(str(j["job_id"]), j.get("user_name", ""), _state(j.get("job_state")),
                  j.get("name", ""))
        if job.state in ACTIVE_STATES:
            jobs[job.job_id] = job
    return jobs


def parse_sacct_names(text: str) -> dict[str, str]:
    """Job id -> name from ``sacct --json``."""
    return {str(j["job_id"]): j.get("name", "") for j in json.loads(text).get("jobs", [])}


def parse_sacct_lines(text: str) -> dict[str, Ended]:
    """``sacct -X -n -P -o JobIDRaw,User,State,Submit`` with SLURM_TIME_FORMAT=%s: no field
    a user controls, so one line is one job."""
    ended = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) != 4 or not fields[0].isdigit():
            continue
        job_id, user, state, submit = fields
        if state.split()[0] in ACTIVE_STATES or state.startswith("COMPLETING"):
            continue
        ended[job_id] = Ended(job_id, user, state,
                              float(submit) if submit.isdigit() else 0.0)
    return ended


def parse_env_files(text: str) -> dict[str, set[str]]:
    """``find /home -path '*/.hpcbridge/env.*' -print0`` -> user -> paths."""
    files: dict[str, set[str]] = {}
    for path in filter(None, text.split("\0")):
        parts = path.split("/")
        if len(parts) == 5 and parts[1] == "home" and parts[3] == ".hpcbridge":
            files.setdefault(parts[2], set()).add(path)
    return files


def parse_servers(users: list[dict]) -> dict[tuple[str, str], Server]:
    servers = {}
    for user in users:
        for name, model in (user.get("servers") or {}).items():
            servers[(user["name"], name)] = Server(
                user["name"], name, bool(model.get("ready")), model.get("pending"),
                model.get("state") or {}, model.get("user_options") or {})
    return servers


class Observer:
    """Takes snapshots of one testbed and one hub for the users the run watches."""

    def __init__(self, tb, hub_url: str, token: str, users: list[str], since: float) -> None:
        self.tb = tb
        self.hub_url = hub_url.rstrip("/")
        self.token = token
        self.users = users
        self.since = since
        self._names: dict[str, str] = {}

    def _exec(self, role: str, argv: list[str], timeout: float = 60) -> str | None:
        try:
            proc = self.tb.exec(role, argv, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return proc.stdout.decode(errors="replace") if proc.returncode == 0 else None

    def active_jobs(self) -> dict[str, Job] | None:
        text = self._exec("ctl", ["squeue", "--json"])
        return None if text is None else parse_squeue_json(text)

    def servers(self) -> dict[tuple[str, str], Server] | None:
        try:
            r = requests.get(f"{self.hub_url}/hub/api/users",
                             params={"include_stopped_servers": "1", "limit": "1000"},
                             headers={"Authorization": f"token {self.token}"}, timeout=30)
        except requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        users = r.json()
        users = users.get("items", users) if isinstance(users, dict) else users
        return parse_servers([u for u in users if u["name"] in self.users])

    def env_files(self) -> dict[str, set[str]]:
        text = self._exec("login", ["find", "/home", "-mindepth", "3", "-maxdepth", "3",
                                    "-path", "/home/*/.hpcbridge/env.*", "-print0"])
        return parse_env_files(text or "")

    def ended(self) -> dict[str, Ended]:
        start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.since - 60))
        text = self._exec("ctl", ["env", "SLURM_TIME_FORMAT=%s", "TZ=UTC", "sacct", "-X", "-n",
                                  "-P", "-S", start, "-u", ",".join(self.users),
                                  "-o", "JobIDRaw,User,State,Submit"])
        return parse_sacct_lines(text or "")

    def ended_ids(self, job_ids: list[str]) -> dict[str, Ended]:
        """Accounting of given jobs (held jobs that never ran are missed by a time window)."""
        if not job_ids:
            return {}
        text = self._exec("ctl", ["env", "SLURM_TIME_FORMAT=%s", "sacct", "-X", "-n", "-P",
                                  "-j", ",".join(job_ids), "-o", "JobIDRaw,User,State,Submit"])
        return parse_sacct_lines(text or "")

    def names(self, job_ids: list[str]) -> dict[str, str]:
        """Names of jobs (cached: a job's name does not change)."""
        missing = [j for j in job_ids if j not in self._names]
        if missing:
            text = self._exec("ctl", ["sacct", "--json", "-j", ",".join(missing)], timeout=120)
            if text:
                self._names.update(parse_sacct_names(text))
        return {j: self._names[j] for j in job_ids if j in self._names}

    def snapshot(self, extra_ids: list[str] = ()) -> Snapshot:
        # the hub's view last: a job the scheduler lists was saved by the hub before
        jobs = self.active_jobs()
        env_files = self.env_files()
        ended = self.ended()
        ended.update(self.ended_ids([j for j in extra_ids if j not in ended]))
        servers = self.servers()
        if jobs is not None:
            self._names.update({j.job_id: j.name for j in jobs.values()})
        return Snapshot(time.time(), jobs, servers, env_files, ended)


class UserSession:
    """One hub user's own HTTP session, as her browser would have it: logged in through
    the hub's login form with her password; opens her servers through the proxy, with
    JupyterHub's OAuth hand-shake every time (the server's cookie is dropped first)."""

    def __init__(self, hub_url: str, user: str, password: str) -> None:
        self.url = hub_url.rstrip("/")
        self.user = user
        self.password = password
        self.session: requests.Session | None = None

    def _logged_in(self) -> requests.Session:
        if self.session is None:
            s = requests.Session()
            s.get(f"{self.url}/hub/login", timeout=30)
            r = s.post(f"{self.url}/hub/login", allow_redirects=False, timeout=60, data={
                "username": self.user, "password": self.password,
                "_xsrf": s.cookies.get("_xsrf", "")})
            if r.status_code != 302:
                raise requests.RequestException(f"login answered {r.status_code}")
            self.session = s
        return self.session

    def _get(self, path: str, **kw) -> requests.Response:
        try:
            r = self._logged_in().get(f"{self.url}{path}", timeout=60, **kw)
        except requests.RequestException:
            self.session = None  # a hub restarted: log in again next time
            raise
        if "/hub/login" in r.url:
            self.session = None
        return r

    def open_server(self, server: str) -> str | None:
        """None when her server opens for her (JupyterLab's page, and the server names
        her as its user); else what went wrong."""
        base = f"/user/{self.user}/" + (f"{server}/" if server else "")
        if self.session is not None:
            for cookie in [c for c in self.session.cookies if c.path.startswith("/user/")]:
                self.session.cookies.clear(cookie.domain, cookie.path, cookie.name)
        try:
            page = self._get(f"{base}lab")
            if page.status_code != 200 or "jupyter-config-data" not in page.text:
                return f"{base}lab answered {page.status_code} at {page.url}: " \
                       f"{page.text[:120]!r}"
            me = self._get(f"{base}api/me")
            who = me.json().get("identity", {}).get("username") if me.ok else None
        except (requests.RequestException, ValueError) as exc:
            return f"{base}: {type(exc).__name__}: {str(exc)[:120]}"
        return None if who == self.user else f"{base}api/me answered {me.status_code}, " \
                                               f"user {who!r}"

    def end_notice(self, server: str) -> str | None:
        """The "previous server ended" notice on her spawn page; None when the page is
        not the form (the server started meanwhile); "" when the form has none."""
        path = f"/hub/spawn/{self.user}" + (f"/{server}" if server else "")
        try:
            r = self._get(path, allow_redirects=False)
        except requests.RequestException:
            return None
        if r.status_code != 200 or "<form" not in r.text:
            return None
        marker = "Your previous server ended: "
        start = r.text.find(marker)
        return "" if start < 0 else r.text[start + len(marker):].split("</p>", 1)[0]


def open_in_chromium(hub_url: str, user: str, password: str, server: str) -> str | None:
    """Log ``user`` in with Debian's Chromium (headless) and open her server's JupyterLab
    until its launcher shows: None when it does, else what went wrong."""
    from playwright.sync_api import Error, sync_playwright

    from tests.testbed.hubtools import CHROMIUM_ARGS

    lab = f"/user/{user}/" + (f"{server}/" if server else "") + "lab"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"),
                                    args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{hub_url.rstrip('/')}/hub/login?next={lab}")
            page.fill("#username_input", user)
            page.fill("#password_input", password)
            page.click("#login_submit")
            page.wait_for_selector(".jp-LauncherCard", timeout=90_000)
            return None
        except Error as exc:
            return f"{lab} in Chromium: {str(exc).splitlines()[0][:160]}"
        finally:
            browser.close()


def chromium_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return shutil.which("chromium") is not None
