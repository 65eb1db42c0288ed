"""The spawn form's choices as HTML: preset cards and the partition table. Pure.

Each card and each table row is a radio button with its own label inside a fieldset
with a legend, so screen readers and keyboards reach them like any radio group; nothing
is said by colour alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from hpcbridge.profiles import SiteProfile
from hpcbridge.profiles.model import NotebookPreset


def _of_cluster(cluster: str | None) -> str:
    """The mark by which the form's script hides the choices of clusters not chosen."""
    return f' data-cluster="{escape(cluster)}"' if cluster else ""


def _radio(name: str, index: int, value: str, checked: bool) -> tuple[str, str]:
    ident = f"hpcb-{name}-{index}"
    return ident, (f'<input type="radio" class="hpcb-radio" name="{name}" id="{ident}" '
                   f'value="{escape(value)}"{" checked" if checked else ""}>')


def count(number: object, noun: str) -> str:
    """``1 core``, ``2 cores``."""
    return f"{number} {noun}{'' if str(number) == '1' else 's'}"


def limits_text(lim: Mapping[str, object]) -> str:
    """A partition's limits per job, as the card and the table say them."""
    gpus = count(lim["gpus"], "GPU") + (
        f" ({', '.join(lim['gpu_types'])})" if lim["gpu_types"] else "")  # type: ignore[arg-type]
    return (f"up to {count(lim['cores'], 'core')}, {lim['memory']} memory, {gpus} per node; "
            f"{count(lim['max_nodes'], 'node')}; walltime up to {lim['max_walltime']}")


def free_text(lim: Mapping[str, object]) -> str:
    now = lim.get("now")
    if not isinstance(now, Mapping):
        return "unknown"
    text = (f"{now['idle_cpus']} of {now['total_cpus']} cores, "
            f"{now['idle_nodes']} of {now['total_nodes']} whole nodes")
    gpus = now.get("gpus") or {}
    if isinstance(gpus, Mapping) and gpus and lim["gpus"]:  # GPUs users may ask for here
        text += "; GPUs " + ", ".join(f"{kind or 'untyped'}: {free} of {total}"
                                      for kind, (free, total) in sorted(gpus.items()))
    return text


def _gives(preset: NotebookPreset, values: Mapping[str, str]) -> str:
    parts = [count(values["cores"], "core"),
             f"{values['memory']} memory" if values["memory"] else "memory in proportion",
             *([count(values["gpus"], "GPU")] if values["gpus"] not in ("", "0") else []),
             f"walltime {values['walltime']}"]
    return ", ".join(parts)


def preset_cards(profile: SiteProfile, limits: Mapping[str, Mapping[str, object]],
                 defaults: Mapping[str, Mapping[str, Mapping[str, str]]],
                 presets: Mapping[str, str], selected: str, describedby: str) -> str:
    """A fieldset of radio cards: each preset's name, what it gives, its partition's
    limits; and *Custom*, which keeps every value to be chosen below."""
    cards = []
    several = len(profile.clusters) > 1
    for index, preset in enumerate(profile.notebooks, start=1):
        key = presets[preset.name]
        ident, radio = _radio("preset", index, preset.name, preset.name == selected)
        cards.append(
            f'<div class="hpcb-card"{_of_cluster(preset.cluster if several else None)}>'
            f'{radio}<label for="{ident}">'
            f'<strong>{escape(preset.description or preset.name)}</strong>'
            f'<span class="hpcb-card-line">Preset {escape(preset.name)} on partition '
            f'{escape(key)}: {escape(_gives(preset, defaults[preset.name][key]))}</span>'
            f'<span class="hpcb-card-line">Limits: {escape(limits_text(limits[key]))}</span>'
            f'</label></div>')
    ident, radio = _radio("preset", 0, "", selected == "")
    cards.append(f'<div class="hpcb-card">{radio}<label for="{ident}"><strong>Custom'
                 '</strong><span class="hpcb-card-line">Choose every value below.</span>'
                 '</label></div>')
    return (f'<fieldset id="hpcb-preset" class="hpcb-group"{describedby}>'
            f'<legend>Preset</legend><div class="hpcb-cards">{"".join(cards)}</div>')


def partition_table(limits: Mapping[str, Mapping[str, object]], selected: str,
                    age: float | None, describedby: str) -> str:
    """A fieldset holding a table: one row per partition with its radio button, its
    limits per job and what is free now (one shared snapshot, whose age it says)."""
    rows = []
    several = len({lim["cluster"] for lim in limits.values()}) > 1
    for index, (key, lim) in enumerate(limits.items()):
        ident, radio = _radio("partition", index, key, key == selected)
        about = f'<br><small>{escape(str(lim["description"]))}</small>' \
            if lim["description"] else ""
        mark = _of_cluster(str(lim["cluster"]) if several else None)
        rows.append(f'<tr{mark}>{"<td>"}{radio} <label for="{ident}">{escape(key)}</label>{about}'
                    f'</td><td>{escape(limits_text(lim))}</td>'
                    f'<td>{escape(free_text(lim))}</td></tr>')
    when = ("the scheduler did not answer" if age is None
            else f"from the scheduler {int(age)} s ago; refreshed at most once a minute")
    return (f'<fieldset id="hpcb-partition" class="hpcb-group"{describedby}>'
            '<legend>Partition</legend>'
            '<table class="table table-sm hpcb-partitions">'
            f'<caption id="hpcb-free-age">Free now: {escape(when)}.</caption>'
            '<thead><tr><th scope="col">Partition</th><th scope="col">Limits per job</th>'
            '<th scope="col">Free now</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def gpu_type_field(limits: Mapping[str, Mapping[str, object]], selected: str) -> str:
    """A select of the GPU types of every partition ('' : any type); the form's script
    offers only the chosen partition's."""
    kinds = sorted({str(k) for lim in limits.values()
                    for k in lim["gpu_types"]})  # type: ignore[attr-defined]
    if not kinds:
        return ""
    pairs = [("", "any type"), *((k, k) for k in kinds)]
    options = "".join(f'<option value="{escape(v)}"{" selected" if v == selected else ""}>'
                      f'{escape(t)}</option>' for v, t in pairs)
    return (' <label for="hpcb-gpu_type">GPU type</label>'
            f'<select name="gpu_type" id="hpcb-gpu_type" class="form-control">{options}'
            '</select>')


def estimate_box() -> str:
    """Where the form's script shows the forecast start and the cost (read out when
    they change)."""
    return ('<section id="hpcb-estimate" class="hpcb-estimate" aria-live="polite" '
            'aria-labelledby="hpcb-estimate-title"><h2 id="hpcb-estimate-title" '
            'class="h5">Before you start</h2>'
            '<p id="hpcb-start">Estimated start: asking the scheduler…</p>'
            '<p id="hpcb-cost">Cost: …</p></section>')


STYLE = """<style>
.hpcb-group { border: 1px solid #ccc; padding: .5em 1em; margin-bottom: 1em; }
.hpcb-group legend { width: auto; font-size: 1rem; font-weight: bold; padding: 0 .3em; }
.hpcb-cards { display: flex; flex-wrap: wrap; gap: .5em; }
.hpcb-card { border: 1px solid #999; border-radius: 4px; padding: .5em; flex: 1 1 14em;
  display: flex; gap: .5em; align-items: flex-start; }
.hpcb-card:has(input:checked) { outline: 3px solid #1a5c9e; }
.hpcb-card label { font-weight: normal; margin: 0; }
.hpcb-card-line { display: block; font-size: .9em; }
.hpcb-estimate { border-left: 4px solid #555; padding-left: .8em; margin-bottom: 1em; }
</style>"""

