"""The spawn form, generated from the site profile. Pure functions.

The browser shows a partition's limits and, when a preset or a partition is chosen,
fills in values that fit it (:func:`derived_values`, sent as data with a few lines of
script); a refused submit comes back with the values sent and each problem next to its
field. Nothing here is trusted: :meth:`HpcSpawner.start` validates whatever arrives,
from this form, the REST API or a URL query, with the profile's one gate.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any

from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.model import NotebookPreset
from hpcbridge.profiles.request import USER_OPTION_KEYS
from hpcbridge.spawner import formparts

#: the form's fields that a refusal's problems are shown next to; on a site of one
#: cluster, a problem of the cluster is one of the partition field
_FIELDS = ("cluster", "preset", "partition", "account", "cores", "memory", "gpus",
           "walltime", "environment")
#: the fields a preset or a partition fills in
_DERIVED = ("cores", "memory", "gpus", "walltime")

#: the form's script: fills in values on a preset's or a partition's choice, asks the hub
#: for the estimate as values change (templates/hpcb-form.js)
_SCRIPT_FILE = Path(__file__).parent / "templates" / "hpcb-form.js"


@functools.cache
def _script() -> str:
    return f"<script>{_SCRIPT_FILE.read_text()}</script>"


@dataclass(frozen=True)
class Refused:
    """A submit the hub refused: the options sent, and (request field, message) of each
    problem the gate found."""

    options: Mapping[str, str]
    problems: tuple[tuple[str, str], ...]


def _key(profile: SiteProfile, cluster: str, partition: str) -> str:
    return partition if len(profile.clusters) == 1 else f"{cluster}/{partition}"


def partition_limits(profile: SiteProfile, free: Mapping[tuple[str, str], Any] | None = None
                     ) -> dict[str, dict[str, object]]:
    """Form key -> a partition's limits, GPU types and (``now``) what is free on it."""
    out: dict[str, dict[str, object]] = {}
    for cname, cluster in profile.clusters.items():
        for pname, part in cluster.partitions.items():
            now = (free or {}).get((cname, part.queue or pname))
            out[_key(profile, cname, pname)] = {
                "now": asdict(now) if now is not None else None,
                "cluster": cname, "partition": pname, "cores": part.cores_per_node,
                "memory": str(part.memory_per_node), "gpus": part.gpus_per_node,
                "gpu_types": list(part.gpu_types), "max_nodes": part.max_nodes,
                "max_walltime": str(part.max_walltime),
                "default_walltime": str(part.default_walltime or part.max_walltime),
                "description": part.description or "",
            }
    return out


def preset_partition(profile: SiteProfile, preset: NotebookPreset) -> str:
    """The form's partition key of ``preset``."""
    cname = profile.cluster_name(preset.cluster)
    return _key(profile, cname, profile.clusters[cname].partition_name(preset.partition))


def derived_values(profile: SiteProfile, preset: NotebookPreset | None, cluster: str,
                   partition: str) -> dict[str, str]:
    """The form's values of ``preset`` (None: Custom) on a partition: the preset's, each
    brought within the partition's limits; unset ones from the partition (memory: empty,
    the hub gives a share of the node's proportional to the cores)."""
    part = profile.clusters[cluster].partitions[partition]
    walltime = (preset.walltime if preset else None) or part.default_walltime \
        or part.max_walltime
    memory = preset.memory if preset else None
    return {
        "cores": str(min(preset.cores if preset else 1, part.cores_per_node)),
        "memory": str(min(memory, part.memory_per_node)) if memory else "",
        "gpus": str(min((preset.gpus or 0) if preset else 0, part.gpus_per_node)),
        "walltime": str(min(walltime, part.max_walltime)),
    }


def _form_data(profile: SiteProfile, limits: Mapping[str, Mapping[str, object]],
               placed: bool) -> dict[str, object]:
    """What the form's script needs: limits, each preset's partition, derived values."""
    defaults: dict[str, dict[str, dict[str, str]]] = {}
    for preset in (None, *profile.notebooks):
        # a preset runs on its cluster only (the gate refuses it on another)
        on = preset.cluster if preset else None
        defaults[preset.name if preset else ""] = {
            key: derived_values(profile, preset, str(lim["cluster"]), str(lim["partition"]))
            for key, lim in limits.items() if on in (None, lim["cluster"])}
    return {"limits": limits, "defaults": defaults, "derived": list(_DERIVED),
            "presets": {p.name: preset_partition(profile, p) for p in profile.notebooks},
            "placed": placed}


def _options(pairs: Sequence[tuple[str, str] | tuple[str, str, str]],
             selected: str | None = None) -> str:
    """``<option>``s of (value, text) or (value, text, cluster) pairs; the cluster, when
    given, lets the form's script hide the options of the clusters not chosen."""
    out = []
    for value, text, *cluster in pairs:
        mark = f' data-cluster="{escape(cluster[0])}"' if cluster and cluster[0] else ""
        chosen = " selected" if value == selected else ""
        out.append(f'<option value="{escape(value)}"{mark}{chosen}>{escape(text)}</option>')
    return "".join(out)


def sentence(message: str) -> str:
    """A problem of the gate as a sentence: capital first letter, a full stop."""
    message = message.strip()
    if not message:
        return message
    return message[0].upper() + message[1:] + ("" if message.endswith((".", "?")) else ".")


def _initial(profile: SiteProfile, limits: Mapping[str, Any], refused: Refused | None
             ) -> dict[str, str]:
    """The values the form shows: what a refused submit sent, else the first preset's."""
    if refused is not None:
        values = {k: str(v) for k, v in refused.options.items() if k in USER_OPTION_KEYS}
        if len(profile.clusters) > 1:
            values["cluster"] = profile.cluster_name(values.get("cluster") or None)
            values["partition"] = f"{values['cluster']}/{values.get('partition', '')}"
        if ":" in values.get("gpus", ""):  # a100:2 was sent as a type and a count
            values["gpu_type"], values["gpus"] = values["gpus"].split(":", 1)
        return values
    preset = profile.notebooks[0] if profile.notebooks else None
    key = preset_partition(profile, preset) if preset else next(iter(limits))
    lim = limits[key]
    return {"cluster": lim["cluster"], "preset": preset.name if preset else "",
            "partition": key,
            **derived_values(profile, preset, lim["cluster"], lim["partition"])}


def render(profile: SiteProfile, user: str,
           accounts: Sequence[str] | Mapping[str, Sequence[str]] = (),
           last_end: str | None = None,
           free: Mapping[tuple[str, str], Any] | None = None,
           refused: Refused | None = None, free_age: float | None = None,
           down: Mapping[str, str] | None = None) -> str:
    """HTML of the spawn form for ``user``; ``accounts``: the user's associations (by
    cluster, on a site of several); ``free``: (cluster, partition) -> Availability, a
    cached snapshot ``free_age`` seconds old; ``refused``: the submit just refused, whose
    values the form keeps and whose problems it shows; ``down``: cluster -> why it does
    not answer now."""
    limits = partition_limits(profile, free)
    values = _initial(profile, limits, refused)
    several = len(profile.clusters) > 1
    errors: dict[str, list[str]] = {}
    for key, message in (refused.problems if refused else ()):
        name = key if several or key != "cluster" else "partition"
        errors.setdefault(name if name in _FIELDS else "", []).append(sentence(message))
    first = limits.get(values.get("partition", "")) or next(iter(limits.values()))
    data = _form_data(profile, limits, bool(errors) and "" not in errors)

    def row(label: str, name: str, widget: str) -> str:
        return _row(label, name, widget, errors.get(name, ()))

    def group(name: str, opened: str) -> str:
        return opened + _error(name, errors.get(name, ())) + "</fieldset>"

    def described(name: str) -> str:
        return f' aria-describedby="hpcb-{name}-error"' if errors.get(name) else ""

    rows = [
        row("Cluster", "cluster", _select("cluster", _clusters(profile, down or {}), values))
    ] if several else []
    rows += [
        group("preset", formparts.preset_cards(
            profile, limits, data["defaults"], data["presets"],  # type: ignore[arg-type]
            values.get("preset", ""), described("preset"))),
        group("partition", formparts.partition_table(
            limits, values.get("partition", ""), free_age, described("partition"))),
        row("Account", "account", _account_field(accounts, values)),
        row("Cores", "cores", _number("cores", 1, first["cores"], values)),
        row("Memory", "memory", _text("memory", "e.g. 4G", "[0-9]+[KMGT]?", values)),
        row("GPUs", "gpus", _number("gpus", 0, first["gpus"], values)
            + formparts.gpu_type_field(limits, values.get("gpu_type", ""))),
        row("Walltime", "walltime", _text("walltime", "HH:MM:SS",
                                          "([0-9]+-)?[0-9]{1,2}(:[0-9]{2}){0,2}", values)),
        row("Environment", "environment", _environment_field(profile, values)),
    ]
    notice = (f'<p class="alert alert-warning">Your previous server ended: {escape(last_end)}</p>'
              if last_end else "")
    general = "".join(f'<p class="alert alert-danger hpcb-error" role="alert">{escape(m)}</p>'
                      for m in errors.get("", ()))
    note = ('<p>A preset fills in everything, within its partition\'s limits; choosing a '
            'partition brings the values within its limits. Change any value after.</p>')
    script_data = json.dumps(data).replace("</", "<\\/")
    return (f'{formparts.STYLE}{notice}{general}{note}<div id="hpcb-form">{"".join(rows)}'
            f'{formparts.estimate_box()}</div>'
            f'<script type="application/json" id="hpcb-data">{script_data}</script>{_script()}')


def _error(name: str, errors: Sequence[str]) -> str:
    return (f'<div class="text-danger hpcb-error" id="hpcb-{name}-error" role="alert">'
            f'{escape(" ".join(errors))}</div>') if errors else ""


def _row(label: str, name: str, field: str, errors: Sequence[str]) -> str:
    """A labelled field, with the sentence of each problem it has next to it."""
    if errors:
        described = f' aria-invalid="true" aria-describedby="hpcb-{name}-error"'
        field = field.replace(f'id="hpcb-{name}"', f'id="hpcb-{name}"{described}', 1)
    return (f'<div class="form-group"><label for="hpcb-{name}">{escape(label)}</label>'
            f'{field}{_error(name, errors)}</div>')


def _value(name: str, values: Mapping[str, str]) -> str:
    value = values.get(name, "")
    return f' value="{escape(value)}"' if value else ""


def _clusters(profile: SiteProfile, down: Mapping[str, str]) -> list[tuple[str, str]]:
    pairs = []
    for name, cluster in profile.clusters.items():
        text = f"{name}: {cluster.description}" if cluster.description else name
        pairs.append((name, text + (" (not answering now)" if name in down else "")))
    return pairs


def _select(name: str, pairs: Sequence[tuple[str, str] | tuple[str, str, str]],
            values: Mapping[str, str]) -> str:
    return (f'<select name="{name}" id="hpcb-{name}" class="form-control">'
            f'{_options(pairs, values.get(name, ""))}</select>')


def _text(name: str, placeholder: str, pattern: str, values: Mapping[str, str]) -> str:
    check = f' pattern="{pattern}"' if pattern else ""
    return (f'<input name="{name}" id="hpcb-{name}" class="form-control" '
            f'placeholder="{placeholder}"{check}{_value(name, values)}>')


def _number(name: str, minimum: int, maximum: object, values: Mapping[str, str]) -> str:
    return (f'<input type="number" name="{name}" id="hpcb-{name}" class="form-control" '
            f'min="{minimum}" max="{escape(str(maximum))}" placeholder="default"'
            f'{_value(name, values)}>')


def _account_field(accounts: Sequence[str] | Mapping[str, Sequence[str]],
                   values: Mapping[str, str]) -> str:
    if isinstance(accounts, Mapping):
        pairs = [(a, a, cluster) for cluster, names in accounts.items() for a in names]
    else:
        pairs = [(a, a, "") for a in accounts]
    if not pairs:
        return _text("account", "default account", "", values)
    return _select("account", [("", "default"), *pairs], values)


def _environment_field(profile: SiteProfile, values: Mapping[str, str]) -> str:
    if len(profile.clusters) > 1:
        pairs = [(e, e, c) for c, cluster in profile.clusters.items()
                 for e in cluster.environments]
    else:
        pairs = [(e, e, "") for c in profile.clusters.values() for e in sorted(c.environments)]
    return _select("environment", [("", "default"), *pairs], values)


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """Form fields to ``user_options``; extra fields are passed on, to be refused."""
    options: dict[str, str] = {}
    for key, values in formdata.items():
        value = (values[0] if values else "").strip()
        if value or key not in USER_OPTION_KEYS:
            options[key] = value
    if "/" in options.get("partition", ""):  # the partition's cluster wins
        options["cluster"], options["partition"] = options["partition"].split("/", 1)
    # the GPU type and count of the form are one option: gpus "a100:2"
    gpu_type = options.pop("gpu_type", "")
    if gpu_type and options.get("gpus", "0") not in ("", "0"):
        options["gpus"] = f"{gpu_type}:{options['gpus']}"
    return options
