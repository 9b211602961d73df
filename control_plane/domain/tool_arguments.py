"""A tool call's arguments, checked against the tool's JSON Schema before anything else.

The model writes the arguments; nothing reaches the network, a policy or the vault
until they are a JSON object within bounds that the tool's ``input_schema`` (JSON
Schema 2020-12, the catalog's) accepts. A refusal names one problem, the first by
path (shallowest first; keys by name, indices by number: the same call always gets
the same answer), by its RFC 6901 JSON pointer, so an agent can repair the call; the
message carries the schema's complaint about the *shape* only, never the offending
value (it may be a secret the model pasted).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from control_plane.domain.errors import InvalidArgument

#: Bounds on what a model may send, checked before the schema: depth and size.
MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_STRING = 256 * 1024

_KEYWORD_MESSAGES = {
    "type": "has the wrong type",
    "required": "misses a required property",
    "additionalProperties": "has a property the tool does not take",
    "enum": "is not one of the allowed values",
    "const": "is not the allowed value",
    "pattern": "does not match the expected pattern",
    "format": "is not in the expected format",
    "minLength": "is too short",
    "maxLength": "is too long",
    "minimum": "is too small",
    "exclusiveMinimum": "is too small",
    "maximum": "is too large",
    "exclusiveMaximum": "is too large",
    "minItems": "has too few items",
    "maxItems": "has too many items",
    "uniqueItems": "has duplicate items",
    "minProperties": "has too few properties",
    "maxProperties": "has too many properties",
    "multipleOf": "is not a multiple of the step",
}


class InvalidArguments(InvalidArgument):
    """``INVALID_ARGUMENTS``: the call's arguments do not fit the tool's schema."""

    default_reason = "INVALID_ARGUMENTS"
    default_message = "the arguments do not fit the tool's input schema"

    def __init__(self, pointer: str, problem: str) -> None:
        where = pointer or "the arguments"
        super().__init__(f"{where} {problem}", metadata={"pointer": pointer})
        self.pointer = pointer


def pointer(path: Any) -> str:
    """RFC 6901: ``/``-joined reference tokens, ``~`` as ``~0`` and ``/`` as ``~1``."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class ArgumentChecker:
    """The compiled schema of one tool (compile once per catalog, check per call)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._validator = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )

    def check(self, arguments: Any) -> dict[str, Any]:
        """``arguments`` if they fit; else raise :class:`InvalidArguments` for the first
        problem by path (then by the keyword's name)."""
        if not isinstance(arguments, dict):
            raise InvalidArguments("", "must be a JSON object")
        _check_bounds(arguments)
        errors = list(self._validator.iter_errors(arguments))
        if errors:
            first = min(errors, key=_order)
            raise InvalidArguments(_where(first), _problem(first))
        return arguments


def _order(error: ValidationError) -> tuple[Any, ...]:
    path = [(0, p) if isinstance(p, int) else (1, str(p)) for p in error.absolute_path]
    return (path, str(error.validator))


def _where(error: ValidationError) -> str:
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value
        names = required if isinstance(required, list) else []
        missing = sorted(str(name) for name in names if name not in error.instance)
        if missing:
            path.append(missing[0])
    return pointer(path)


def _problem(error: ValidationError) -> str:
    return _KEYWORD_MESSAGES.get(str(error.validator), "does not fit the schema")


def _check_bounds(value: Any) -> None:
    """Depth, node count, string length and finite numbers, iteratively (no recursion
    limit to hit on a hostile 10,000-deep list)."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 1, ())]
    nodes = 0
    while stack:
        node, depth, path = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise InvalidArguments("", "are too large")
        if depth > MAX_DEPTH:
            raise InvalidArguments(pointer(path), "is nested too deeply")
        if isinstance(node, str):
            if len(node) > MAX_STRING:
                raise InvalidArguments(pointer(path), "is too long")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidArguments(pointer(path), "is not a finite number")
        elif isinstance(node, dict):
            for key, item in node.items():
                if not isinstance(key, str):
                    raise InvalidArguments(pointer(path), "has a non-string key")
                stack.append((item, depth + 1, (*path, key)))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                stack.append((item, depth + 1, (*path, index)))
