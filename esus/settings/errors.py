"""Errors that end in one line for the person at the console."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

M = TypeVar("M", bound=BaseModel)

#: Exit codes; bad settings: the service cannot start until a person fixes them.
EXIT_OK, EXIT_FAILURE, EXIT_BAD_SETTINGS = 0, 1, 2


class SettingsError(Exception):
    """A setting is wrong; the message names the key, the value and what is expected."""


def _describe(error: ErrorDetails, hide: frozenset[str]) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) if loc else "(top level)"
    kind = error["type"]
    if kind == "missing":
        return f"{key} is missing: it is required"
    if kind == "extra_forbidden":
        return f"{key} is not a known key: check its spelling and section"
    message = error["msg"].removeprefix("Value error, ")
    if not loc:
        return message
    given = error.get("input")
    if isinstance(given, dict | list):   # a whole section's rule (pins used twice): its content is not the news
        return f"[{key}]: {message}"
    value = "(hidden)" if loc[-1] in hide else repr(given)
    return f"{key} = {value}: {message}"


def first_validation_error(model: type[M], data: Any, where: str,
                           hide: frozenset[str] = frozenset(), sources: dict[str, str] | None = None) -> M:
    """Validate, or raise SettingsError describing the first problem in one line, said to be from
    `where`, or from the key's own place in `sources` (the environment or a file)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        first = str(errors[0]["loc"][0]) if errors[0]["loc"] else ""
        raise SettingsError(f"{(sources or {}).get(first, where)}: {_describe(errors[0], hide)}{more}") from None
