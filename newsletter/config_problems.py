"""A config's validation errors as the editor reads them: one line each, naming the file and
the key as written in it ([smtp] port, [[feeds]] #2 url), and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from pathlib import Path

from pydantic_core import ErrorDetails


def describe_problems(errors: list[ErrorDetails], path: Path, tables: Collection[str]) -> str:
    """Every problem of one file, a line each; `tables` are the config's top-level tables."""
    # An error inside a table or array also fails the table itself ("should have at least 1
    # item"): only the innermost says what to fix.
    inner = [tuple(error["loc"]) for error in errors]
    errors = [
        error
        for error in errors
        if not any(
            len(other) > len(error["loc"]) and other[: len(error["loc"])] == error["loc"]
            for other in inner
        )
    ]
    # A misspelt key explains the missing one it was meant to be: name the misspelling first.
    errors.sort(key=lambda error: error["type"] != "extra_forbidden")
    return "\n".join(dict.fromkeys(_problem(path, error, tables) for error in errors))


def _problem(path: Path, error: ErrorDetails, tables: Collection[str]) -> str:
    """One validation error as the editor reads it: the file, the key as written, what to do."""
    key = _key_name(error["loc"], tables)
    message = error["msg"]
    if error["type"] == "missing":
        message = "missing; add it"
    elif error["type"] == "extra_forbidden":
        message = "unknown key; check its spelling"
        if len(error["loc"]) == 1:
            close = difflib.get_close_matches(str(error["loc"][0]), tables, 1)
            message = f"unknown table; did you mean [{close[0]}]?" if close else message
    elif error["type"] == "string_pattern_mismatch":
        allowed = _PATTERN_HELP.get(str(error.get("ctx", {}).get("pattern")), "")
        message = f"{error['input']!r} is not allowed here; {allowed or message}"
    elif "input" in error and error["type"] not in ("value_error", "assertion_error"):
        message = f"{message} (got {error['input']!r})"
    message = message.removeprefix("Value error, ")
    where = f"{path}: {key}:" if key else f"{path}:"
    return f"{where} {message}"


_PATTERN_HELP = {
    r"^[a-z0-9][a-z0-9_-]*$": "use lower-case letters, digits, '-' and '_', "
    "starting with a letter or digit",
    r"^[A-Za-z0-9.-]+$": "use a domain name (letters, digits, dots and '-')",
    r"^[A-Za-z0-9._-]+$": "use letters, digits, '.', '_' and '-'",
}


_ARRAY_SECTIONS = frozenset({"feeds", "themes", "lists"})


def _key_name(loc: Sequence[int | str], tables: Collection[str]) -> str:
    """Pydantic's location as the user sees it in the file: [smtp] port, [[feeds]] #2 url."""
    parts = ["from" if part == "from_" else part for part in loc]
    if not parts:
        return ""
    head, *rest = parts
    if head in _ARRAY_SECTIONS:
        label = f"[[{head}]]"
        if rest and isinstance(rest[0], int):
            label += f" #{rest[0] + 1}"
            rest = rest[1:]
    elif head in tables:
        label = f"[{head}]"
    else:
        label = str(head)
    return " ".join([label, ".".join(map(str, rest))]).rstrip()
