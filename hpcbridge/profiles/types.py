"""Typed values of a site profile: walltimes, memory sizes and the grammars of strings.

Every string that can reach a batch script is one of the grammar types below, checked
when the profile is loaded and again when a request is validated. The grammars exclude
newlines, quotes and shell metacharacters, so a value can never add a line or a command
to a rendered script. Walltimes and memory sizes are parsed once into integers
(seconds, bytes) that know how to print themselves for each scheduler.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic_core import core_schema

from hpcbridge.errors import quote

_WALLTIME_RE = re.compile(
    r"^(?:(?P<d>\d{1,4})-(?P<dh>\d{1,2})(?::(?P<dm>\d{1,2})(?::(?P<ds>\d{1,2}))?)?"
    r"|(?P<h>\d{1,6}):(?P<m>\d{1,2}):(?P<s>\d{1,2})"
    r"|(?P<mm>\d{1,7}):(?P<ss>\d{1,2})"
    r"|(?P<min>\d{1,7}))$"
)
_WALLTIME_HELP = (
    'use "HH:MM:SS", "D-HH:MM:SS", "D-HH", "MM:SS" or "MINUTES" (Slurm formats), as a string'
)


def _ecma(pattern: str) -> str:
    """A Python regex with named groups as one editors (ECMA-262) accept: unnamed groups."""
    return re.sub(r"\?P<\w+>", "?:", pattern)


class Walltime(int):
    """A wall-clock duration in whole seconds; ``str()`` gives ``HH:MM:SS``.

    Parsed from the formats Slurm accepts for ``--time``. Hours may exceed 24 in the
    printed form, which both Slurm and PBS accept.
    """

    @classmethod
    def parse(cls, text: str) -> Walltime:
        """Parse a walltime string; raise ValueError with the accepted formats."""
        match = _WALLTIME_RE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{quote(text)} is not a walltime: {_WALLTIME_HELP}")
        g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
        if "d" in g:
            seconds = ((g["d"] * 24 + g["dh"]) * 60 + g.get("dm", 0)) * 60 + g.get("ds", 0)
            parts = [g["dh"], g.get("dm", 0), g.get("ds", 0)]
        elif "h" in g:
            seconds = (g["h"] * 60 + g["m"]) * 60 + g["s"]
            parts = [0, g["m"], g["s"]]
        elif "mm" in g:
            seconds = g["mm"] * 60 + g["ss"]
            parts = [0, 0, g["ss"]]
        else:
            seconds = g["min"] * 60
            parts = [0, 0, 0]
        if parts[0] >= 24 or parts[1] >= 60 or parts[2] >= 60:
            raise ValueError(f"{quote(text)} is not a walltime: a field is out of range")
        if seconds <= 0:
            raise ValueError(f"{quote(text)} is not a walltime: it must be longer than zero")
        return cls(seconds)

    def __str__(self) -> str:
        hours, rest = divmod(int(self), 3600)
        return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"

    def __repr__(self) -> str:
        return f"Walltime({str(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            _validate_walltime,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {
            "type": "string",
            "pattern": _ecma(_WALLTIME_RE.pattern),
            "examples": ["00:30:00", "1-00:00:00"],
        }


def _validate_walltime(value: Any) -> Walltime:
    if isinstance(value, Walltime):
        return value
    if isinstance(value, str):
        return Walltime.parse(value)
    # an unquoted YAML number is ambiguous (minutes? seconds?), so it is refused
    raise ValueError(f"{quote(value)} is not a walltime: {_WALLTIME_HELP}")


_MEMORY_RE = re.compile(r"^(?P<n>\d{1,9})\s*(?P<unit>[KkMmGgTt])(?:i?[Bb])?$")
_UNITS = {"K": 1, "M": 2, "G": 3, "T": 4}
_MEMORY_HELP = 'use a whole number with a unit, e.g. "512M", "4G", "16GB", "1T" (1G = 1024M)'


class Memory(int):
    """A memory size in bytes, a whole number of MiB; ``str()`` gives Slurm's ``4G`` form.

    Units are binary (1G = 1024M), as in Slurm and PBS. A bare number is refused because
    Slurm reads it as megabytes and PBS as bytes.
    """

    @classmethod
    def parse(cls, text: str) -> Memory:
        """Parse a memory size string; raise ValueError with the accepted forms."""
        match = _MEMORY_RE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{quote(text)} is not a memory size: {_MEMORY_HELP}")
        size = int(match["n"]) * 1024 ** _UNITS[match["unit"].upper()]
        if size < 1024**2 or size % 1024**2:
            raise ValueError(f"{quote(text)} is not a memory size: use whole megabytes or more")
        return cls(size)

    def _scaled(self) -> tuple[int, str]:
        for unit in ("T", "G", "M"):
            factor = 1024 ** _UNITS[unit]
            if self % factor == 0:
                return self // factor, unit
        return self // 1024**2, "M"  # unreachable for parsed values: whole MiB

    def __str__(self) -> str:
        number, unit = self._scaled()
        return f"{number}{unit}"

    def pbs(self) -> str:
        """PBS spelling: ``4gb``."""
        number, unit = self._scaled()
        return f"{number}{unit.lower()}b"

    def __repr__(self) -> str:
        return f"Memory({str(self)!r})"

    @classmethod
    def from_mib(cls, mib: int) -> Memory:
        return cls(mib * 1024**2)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            _validate_memory,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {"type": "string", "pattern": _ecma(_MEMORY_RE.pattern), "examples": ["4G", "512M"]}


def _validate_memory(value: Any) -> Memory:
    if isinstance(value, Memory):
        return value
    if isinstance(value, str):
        return Memory.parse(value)
    raise ValueError(f"{quote(value)} is not a memory size: {_MEMORY_HELP}")


def _grammar(pattern: str, what: str, hint: str, *, schema_pattern: bool = True) -> Any:
    """An annotated ``str`` type that must fully match ``pattern``."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{quote(value)} is not a valid {what}: {hint}")
        return value

    schema: dict[str, Any] = {"type": "string"}
    if schema_pattern:
        schema["pattern"] = f"^(?:{pattern})$"
    return Annotated[str, AfterValidator(check), WithJsonSchema(schema)]


NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"
USER_PATTERN = r"[A-Za-z_][A-Za-z0-9_.-]{0,31}"
ENV_VAR_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_PATH_CHARS = r"[A-Za-z0-9_.+@/-]"

#: cluster, partition, account, environment, preset, QOS, job and site names
Name = _grammar(NAME_PATTERN, "name", "use letters, digits, '_', '.', '-' (up to 64)")
#: a login name on the cluster
UserName = _grammar(USER_PATTERN, "user name", "use letters, digits, '_', '.', '-'")
EnvVarName = _grammar(ENV_VAR_PATTERN, "environment variable name", "use [A-Za-z_][A-Za-z0-9_]*")
#: an absolute path that is safe to write unquoted into a script
AbsPath = _grammar(
    rf"/{_PATH_CHARS}{{0,511}}", "absolute path", "start with '/', use letters, digits, _.+@/-"
)
HomeTemplate = _grammar(
    rf"/{_PATH_CHARS}*\{{user\}}{_PATH_CHARS}*",
    "home directory template",
    "an absolute path containing '{user}' once, e.g. /home/{user}",
)
#: a folder under the home: no leading '/', no '..' part
LogFolder = _grammar(
    r"(?!.*(^|/)\.\.(/|$))[A-Za-z0-9_.+@-]+(/[A-Za-z0-9_.+@-]+){0,15}",
    "folder under the home",
    "a relative path without '..', e.g. .hpcbridge/logs",
    schema_pattern=False,
)
ModuleName = _grammar(
    rf"[A-Za-z0-9_]{_PATH_CHARS}{{0,127}}", "module name", "use letters, digits, _.+@/-"
)
GresName = _grammar(
    r"[A-Za-z0-9_.-]{1,32}(?::[A-Za-z0-9_.-]{1,32})?", "gres name", "e.g. gpu or gpu:a100"
)
CondaEnv = _grammar(
    rf"{NAME_PATTERN}|/{_PATH_CHARS}{{0,511}}", "conda environment", "a name or an absolute path"
)
ImageRef = _grammar(
    rf"/{_PATH_CHARS}{{0,511}}|(?:docker|oras|library)://[A-Za-z0-9_.+@/:-]{{1,511}}",
    "container image",
    "an absolute path to a .sif file or a docker://, oras:// or library:// URI",
)
HubUrl = _grammar(
    r"https?://[A-Za-z0-9_.-]{1,253}(?::[0-9]{1,5})?(?:/[A-Za-z0-9_.~/-]*)?",
    "hub URL",
    "e.g. http://10.0.0.1:8081 (no query, no credentials)",
    schema_pattern=False,  # may hold ${VAR} before expansion; checked after loading
)
#: an authenticator: a short name, an entry point name or a dotted module.Class path
ClassRef = _grammar(r"[A-Za-z_][A-Za-z0-9_.]{0,199}", "class name",
                    "e.g. ldap, pam or package.module.Class")
#: an SQLAlchemy database URL (it may hold a password: never logged)
DbUrl = _grammar(
    r"(?:sqlite|postgresql|mysql)(?:\+[a-z0-9]+)?://\S{0,1000}", "database URL",
    "e.g. postgresql+psycopg://hub:${HUB_DB_PASSWORD}@db/hub or sqlite:///path",
    schema_pattern=False,  # may hold ${VAR} before expansion
)
Host = _grammar(
    r"[A-Za-z0-9_.:-]{1,253}", "host", "a host name or address", schema_pattern=False
)


def _check_text(value: str) -> str:
    # str.isprintable() is False for newlines, tabs, NUL, escape and the Unicode line
    # and paragraph separators, so one value is always one line wherever it is written
    if not value.isprintable():
        raise ValueError(f"{quote(value)} must be one line of printable characters")
    return value


#: free text shown to people (descriptions); one printable line
Text = Annotated[str, AfterValidator(_check_text)]
#: a file on the machine running hpcbridge (SSH key, known_hosts); never written to a script
LocalPath = Annotated[str, AfterValidator(_check_text)]


def _check_script_line(value: str) -> str:
    _check_text(value)
    if not value.strip():
        raise ValueError("a prologue line must not be empty")
    return value


#: one line of shell written by the site admin into every job script (prologue)
ScriptLine = Annotated[str, AfterValidator(_check_script_line)]


def check_command_word(word: str) -> str:
    """A word of the command a job runs: one printable line (it is quoted when rendered)."""
    if not isinstance(word, str) or not word:
        raise ValueError("command words must be non-empty strings")
    return _check_text(word)
