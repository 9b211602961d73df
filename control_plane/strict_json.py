"""Strict JSON parsing shared by every place that reads untrusted or security-relevant JSON.

``json.loads`` silently keeps the last of duplicate member names and accepts
``NaN``/``Infinity``; two values for one name make the meaning depend on the
parser (RFC 8725 §2.6), so both are refused here.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKeyError", "parse_json", "parse_json_object"]


class DuplicateKeyError(ValueError):
    """A JSON object named the same member twice."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise DuplicateKeyError("duplicate member name")
        obj[name] = value
    return obj


def _refuse_constant(_name: str) -> Any:
    raise ValueError("non-standard JSON constant")


def parse_json(data: bytes | str) -> Any:
    """Parse UTF-8 JSON strictly. Raises ValueError (DuplicateKeyError for duplicates)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        return json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
        )
    except DuplicateKeyError:
        raise
    except (UnicodeDecodeError, RecursionError, ValueError, TypeError):
        raise ValueError("invalid JSON") from None


def parse_json_object(data: bytes | str) -> dict[str, Any]:
    """:func:`parse_json`, and the top level must be an object."""
    value = parse_json(data)
    if not isinstance(value, dict):
        raise ValueError("JSON value is not an object")
    return value
