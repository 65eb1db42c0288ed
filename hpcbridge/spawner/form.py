"""The spawn form, generated from the site profile. Pure functions.

The browser updates limits as the partition changes (data attributes + a few lines of
script), but nothing here is trusted: :meth:`HpcSpawner.start` validates whatever
arrives, from this form, the REST API or a URL query, with the profile's one gate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.request import USER_OPTION_KEYS

_SCRIPT = """
<script>
(function () {
  const limits = JSON.parse(document.getElementById('hpcb-limits').textContent);
  const part = document.getElementById('hpcb-partition');
  const show = document.getElementById('hpcb-partition-limits');
  function apply() {
    const l = limits[part.value];
    if (!l) { show.textContent = ''; return; }
    document.getElementById('hpcb-cores').max = l.cores;
    document.getElementById('hpcb-gpus').max = l.gpus;
    document.getElementById('hpcb-gpus').disabled = l.gpus === 0;
    show.textContent = 'up to ' + l.cores + ' cores, ' + l.memory + ' memory, ' +
      l.gpus + ' GPUs, walltime ' + l.max_walltime + ' per job. ' + l.free;
  }
  part.addEventListener('change', apply);
  apply();
})();
</script>
"""


def partition_limits(profile: SiteProfile, free: Mapping[tuple[str, str], Any] | None = None
                     ) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for cname, cluster in profile.clusters.items():
        for pname, part in cluster.partitions.items():
            key = pname if len(profile.clusters) == 1 else f"{cname}/{pname}"
            now = (free or {}).get((cname, part.queue or pname))
            out[key] = {
                "free": (f"now free: {now.idle_cpus} of {now.total_cpus} cores, "
                         f"{now.idle_nodes} of {now.total_nodes} whole nodes") if now else "",
                "cluster": cname, "partition": pname, "cores": part.cores_per_node,
                "memory": str(part.memory_per_node), "gpus": part.gpus_per_node,
                "max_walltime": str(part.max_walltime),
                "default_walltime": str(part.default_walltime or part.max_walltime),
                "description": part.description or "",
            }
    return out


def _options(pairs: Sequence[tuple[str, str]], selected: str | None = None) -> str:
    return "".join(
        f'<option value="{escape(v)}"{" selected" if v == selected else ""}>{escape(t)}</option>'
        for v, t in pairs
    )


def render(profile: SiteProfile, user: str, accounts: Sequence[str] = (),
           last_end: str | None = None,
           free: Mapping[tuple[str, str], Any] | None = None) -> str:
    """HTML of the spawn form for ``user``; ``accounts``: the user's associations;
    ``free``: (cluster, partition) -> Availability, a cached snapshot."""
    limits = partition_limits(profile, free)
    presets = [("", "Custom (choose below)")] + [
        (p.name, p.description or p.name) for p in profile.notebooks]
    first = next(iter(limits))
    first_preset = profile.notebooks[0].name if profile.notebooks else ""
    rows = [
        _row("Preset", f'<select name="preset" id="hpcb-preset" class="form-control">'
                       f'{_options(presets, first_preset)}'
                       "</select>"),
        _row("Partition", f'<select name="partition" id="hpcb-partition" class="form-control">'
                          f'{_options([("", "from the preset"), *[(k, k) for k in limits]])}'
                          '</select><small id="hpcb-partition-limits"></small>'),
        _row("Account", _account_field(accounts)),
        _row("Cores", _number("cores", "hpcb-cores", 1, limits[first]["cores"])),
        _row("Memory", '<input name="memory" id="hpcb-memory" class="form-control" '
                       'placeholder="e.g. 4G" pattern="[0-9]+[KMGT]?">'),
        _row("GPUs", _number("gpus", "hpcb-gpus", 0, limits[first]["gpus"])),
        _row("Walltime", '<input name="walltime" id="hpcb-walltime" class="form-control" '
                         'placeholder="HH:MM:SS" pattern="([0-9]+-)?[0-9]{1,2}(:[0-9]{2}){0,2}">'),
        _row("Environment", _environment_field(profile)),
    ]
    notice = (f'<p class="alert alert-warning">Your previous server ended: {escape(last_end)}</p>'
              if last_end else "")
    note = ('<p>A preset fills in everything; fields you set here override it. '
            'Empty fields take the preset\'s or the partition\'s defaults.</p>')
    data = json.dumps(limits).replace("</", "<\\/")
    return (f'{notice}{note}<div id="hpcb-form">{"".join(rows)}</div>'
            f'<script type="application/json" id="hpcb-limits">{data}</script>{_SCRIPT}')


def _row(label: str, field: str) -> str:
    return f'<div class="form-group"><label>{escape(label)}</label>{field}</div>'


def _number(name: str, ident: str, minimum: int, maximum: object) -> str:
    return (f'<input type="number" name="{name}" id="{ident}" class="form-control" '
            f'min="{minimum}" max="{escape(str(maximum))}" placeholder="default">')


def _account_field(accounts: Sequence[str]) -> str:
    if not accounts:
        return ('<input name="account" id="hpcb-account" class="form-control" '
                'placeholder="default account">')
    return (f'<select name="account" id="hpcb-account" class="form-control">'
            f'{_options([("", "default"), *[(a, a) for a in accounts]])}</select>')


def _environment_field(profile: SiteProfile) -> str:
    names = sorted({e for c in profile.clusters.values() for e in c.environments})
    return (f'<select name="environment" id="hpcb-environment" class="form-control">'
            f'{_options([("", "default"), *[(n, n) for n in names]])}</select>')


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """Form fields to ``user_options``; extra fields are passed on, to be refused."""
    options: dict[str, str] = {}
    for key, values in formdata.items():
        value = (values[0] if values else "").strip()
        if value or key not in USER_OPTION_KEYS:
            options[key] = value
    if "/" in options.get("partition", ""):
        options["cluster"], options["partition"] = options["partition"].split("/", 1)
    return options
