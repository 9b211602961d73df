"""A tool call's provider request, built from the tool's HTTP mapping and its arguments.

Pure: the arguments were already checked against the tool's JSON Schema (so every
URL placeholder is a present, required argument) and the connection values are
the account's connection parameters and kept token-response fields. Path
placeholders are percent-encoded as one segment, so an argument can never add a
path segment, a query or another host.

* ``url`` — ``{connection.<field>}`` from the account, ``{<arg>}`` from the
  arguments;
* ``query`` — the listed arguments that are present (booleans as ``true`` /
  ``false``, arrays comma-joined);
* body — ``graphql``: ``{"query": <the tool's document>, "variables": <every
  argument not used in the URL or the query>}``; ``json``: the named strategy's
  output, else every argument not used in the URL or the query; ``form``: the
  same as flat form fields; ``none``: nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from control_plane.connectors.authorize import fill_connection
from control_plane.connectors.model import Tool
from control_plane.connectors.strategies import STRATEGIES

_ARG = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class ToolRequest:
    method: str
    url: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None


def scalar(value: Any) -> str:
    """A query or form value as the provider reads it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(scalar(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def build_request(
    tool: Tool, args: Mapping[str, Any], connection: Mapping[str, str]
) -> ToolRequest:
    mapping = tool.http
    used: set[str] = set()

    def arg(m: re.Match[str]) -> str:
        name = m.group(1)
        used.add(name)
        return quote(scalar(args[name]), safe="")

    url = _ARG.sub(arg, fill_connection(mapping.url, connection))
    query = {q: scalar(args[q]) for q in mapping.query if q in args}
    used.update(mapping.query)
    rest = {k: v for k, v in args.items() if k not in used}
    body_json: Any = None
    form: dict[str, str] | None = None
    if mapping.graphql is not None:
        body_json = {"query": mapping.graphql.query, "variables": rest}
    elif mapping.body == "json":
        body_json = STRATEGIES[mapping.strategy](args) if mapping.strategy else rest
    elif mapping.body == "form":
        form = {k: scalar(v) for k, v in rest.items()}
    return ToolRequest(mapping.method, url, query, dict(mapping.headers), body_json, form)
