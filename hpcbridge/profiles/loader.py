"""Load a site profile from YAML and report every problem as ``PATH:LINE:COL: message``.

Three passes, each reporting all it finds: YAML reading (syntax, duplicate keys, unset
environment variables), the typed model (unknown keys with a close match, wrong types,
values outside their grammar), then cross-field checks. A later pass runs only when the
earlier ones found nothing, since it needs their result.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from hpcbridge.errors import ProfileError
from hpcbridge.profiles.checks import check_profile
from hpcbridge.profiles.model import SiteProfile
from hpcbridge.profiles.request import did_you_mean
from hpcbridge.profiles.yamlsrc import Document, Mark, Path, read_yaml


def load_profile(path: str | FsPath, env: Mapping[str, str] | None = None) -> SiteProfile:
    """Load and check the site profile at ``path``; raise ProfileError listing every problem."""
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([f"{path}:1:1: cannot read the profile: {exc}"]) from None
    return load_profile_text(text, str(path), env)


def load_profile_text(
    text: str, path: str = "<profile>", env: Mapping[str, str] | None = None
) -> SiteProfile:
    """Load and check a site profile from ``text``; ``path`` names it in messages.

    ``env`` supplies ``${VAR}`` values in transport and hub settings (default: the
    process environment).
    """
    doc = read_yaml(text, env)
    problems = list(doc.problems)
    profile = None
    if doc.data is not None and not isinstance(doc.data, dict):
        problems.append((doc.mark(()), "a site profile must be a mapping of keys"))
    elif doc.data is not None:
        # duplicate keys and unset variables still leave data worth checking; a value
        # already reported (e.g. emptied by an unset variable) is not reported twice
        profile, found = _validate(doc)
        reported = {mark for mark, _ in problems}
        problems += [(mark, msg) for mark, msg in found if mark not in reported]
    if profile is not None and not problems:
        for fpath, message in check_profile(profile):
            problems.append((doc.mark(fpath), f"{dotted(fpath)}: {message}"))
    if problems:
        problems.sort(key=lambda item: (item[0].line, item[0].column))
        raise ProfileError([f"{path}:{m.line}:{m.column}: {msg}" for m, msg in problems])
    assert profile is not None
    return profile


def dotted(path: Path) -> str:
    """``clusters.tb.partitions.debug`` / ``notebooks[0].cores``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def _validate(doc: Document) -> tuple[SiteProfile | None, list[tuple[Mark, str]]]:
    try:
        return SiteProfile.model_validate(doc.data), []
    except ValidationError as exc:
        return None, [_locate(doc, error) for error in exc.errors()]


def _walk(doc: Document, loc: tuple[Any, ...]) -> tuple[Path, list[Any]]:
    """The data path that ``loc`` reaches, and the loc elements past it.

    Pydantic locations include union tags and ``[key]`` markers that are not data keys;
    elements that are not keys of the data are skipped.
    """
    node: Any = doc.data
    path: Path = ()
    rest: list[Any] = []
    for elem in loc:
        in_dict = isinstance(node, dict) and elem in node
        in_list = isinstance(node, list) and isinstance(elem, int) and 0 <= elem < len(node)
        if in_dict or in_list:
            node, path = node[elem], (*path, elem)
        else:
            rest.append(elem)
    return path, rest


def _locate(doc: Document, error: Any) -> tuple[Mark, str]:
    loc, kind = tuple(error["loc"]), error["type"]
    path, rest = _walk(doc, loc)
    where = dotted(path)
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        return doc.mark(path, key=True), (
            f"unknown key '{path[-1]}' in {dotted(path[:-1])}"
            f"{did_you_mean(str(path[-1]), allowed, 'allowed keys')}"
        )
    if kind == "missing":
        return doc.mark(path, key=True), f"{where}: missing required key '{rest[-1]}'"
    if "[key]" in rest:
        return doc.mark(path, key=True), f"key '{path[-1]}': {_message(error)}"
    return doc.mark(path), f"{where}: {_message(error)}"


def _message(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"{error['input']!r} is not allowed — allowed: {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"kind {ctx.get('tag')!r} is not allowed — allowed: {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "missing required key 'kind' (ssh or local)"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping of keys, got {_shown(error['input'])}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} entry, got none"
    if kind == "list_type":
        return f"expected a list, got {_shown(error['input'])}"
    return f"{error['msg']}, got {_shown(error['input'])}"


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the model reached by following ``loc`` from SiteProfile."""
    tp: Any = SiteProfile
    for elem in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(elem))
            if field is None:
                return []
            tp = field.annotation
            continue
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is dict:
            tp = args[1]
        elif origin is list:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next((a for a in args if _tag_of(a) == elem), None)
        if tp is None:
            return []
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``| None``."""
    while True:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            tp = args[0]
        elif origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            tp = next(a for a in args if a is not type(None))
        else:
            return tp


def _tag_of(tp: Any) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel) and "kind" in tp.model_fields:
        return typing.get_args(tp.model_fields["kind"].annotation)[0]
    return None
