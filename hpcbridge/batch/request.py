"""What a "Create Job" asks for, checked before anything is stored or submitted. Pure.

Resources pass the site profile's one gate (:func:`hpcbridge.profiles.validate_request`),
exactly as a spawn's options do: jupyter-scheduler's *compute type* names a preset, its
*runtime environment* names a profile environment, and ``runtime_environment_parameters``
may carry any spawn option (``partition``, ``walltime``, ``cores``, ...). Parameters must be
names the notebook's ``parameters`` cell assigns.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hpcbridge.errors import RequestError, quote
from hpcbridge.profiles import JobRequest, SiteProfile, ValidatedRequest, validate_request
from hpcbridge.profiles.request import did_you_mean

#: more parameters than this, or a longer value, is refused
MAX_PARAMETERS = 100
MAX_VALUE_LENGTH = 10_000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def notebook_parameters(notebook: Mapping[str, Any]) -> list[str] | None:
    """Names assigned in the notebook's first code cell tagged ``parameters`` (papermill's
    convention); None when it has no such cell."""
    for cell in notebook.get("cells") or ():
        if not isinstance(cell, Mapping) or cell.get("cell_type") != "code":
            continue
        if "parameters" not in ((cell.get("metadata") or {}).get("tags") or ()):
            continue
        try:
            tree = ast.parse(_source(cell))
        except SyntaxError as exc:
            raise RequestError(f"the notebook's parameters cell is not valid Python "
                               f"(line {exc.lineno}): {exc.msg}") from None
        names: list[str] = []
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign | ast.AugAssign) else []
            names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
        return names
    return None


def _value(text: Any) -> Any:
    """A parameter's value: a Python literal of JSON's kinds (``3``, ``0.5``, ``True``,
    ``'x'``, ``[1, 2]``) when it reads as one, else the text itself."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) > MAX_VALUE_LENGTH:
        raise RequestError(f"a parameter value is longer than {MAX_VALUE_LENGTH} characters")
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return value if _json_kind(value) else text


def _json_kind(value: Any, depth: int = 0) -> bool:
    if depth > 10:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list):
        return all(_json_kind(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_kind(v, depth + 1) for k, v in value.items())
    return False


def parse_parameters(given: Mapping[str, Any] | None, declared: Sequence[str] | None
                     ) -> dict[str, Any]:
    """The dialog's parameters as papermill values; RequestError for a name the notebook's
    parameters cell does not assign (or a notebook without one)."""
    given = dict(given or {})
    if not given:
        return {}
    if len(given) > MAX_PARAMETERS:
        raise RequestError(f"more than {MAX_PARAMETERS} parameters")
    for name in given:
        if not (isinstance(name, str) and _IDENTIFIER.fullmatch(name)) or keyword.iskeyword(name):
            raise RequestError(f"parameter name {quote(name)} is not a Python name")
    if declared is None:
        raise RequestError("the notebook has no cell tagged 'parameters', so it takes no "
                           "parameters (tag the cell that sets the defaults: papermill's "
                           "convention)")
    unknown = [n for n in given if n not in declared]
    if unknown:
        hint = did_you_mean(unknown[0], list(declared), "the parameters cell sets")
        raise RequestError(f"parameter {quote(unknown[0])} is not set in the notebook's "
                           f"parameters cell{hint}")
    return {name: _value(text) for name, text in given.items()}


def batch_request(profile: SiteProfile, user: str, *, cluster: str, environment: str | None,
                  compute_type: str | None, options: Mapping[str, Any] | None,
                  command: tuple[str, ...], job_name: str) -> ValidatedRequest:
    """The job's resources through the profile's gate; RequestError / LimitExceeded."""
    merged: dict[str, Any] = dict(options or {})
    if compute_type and merged.get("preset") is None:
        merged["preset"] = compute_type
    if environment and merged.get("environment") is None:
        merged["environment"] = environment
    request = validate_request(profile, JobRequest.from_options(
        merged, user=user, job_name=job_name, command=command))
    if request.cluster != cluster:
        raise RequestError(f"batch jobs from this server run on cluster {cluster}, "
                           f"not {request.cluster}")
    return request
