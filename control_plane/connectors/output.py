"""What a tool call gives back: the next page's cursor, and the answer shaped.

Pure functions over the provider's parsed JSON answer (``body_doc``) and its
headers, for the ExecuteTool service:

* :func:`next_cursor` — the value to pass in the tool's ``cursor_argument`` for
  the next page, ``""`` on the last page (or for a tool that does not page). It
  comes from a dotted path in the body (Google ``nextPageToken``, Slack
  ``response_metadata.next_cursor``), gated by a ``has_more`` flag when the
  provider always sends a cursor (Dropbox, Notion, GraphQL ``pageInfo``), or from
  a query parameter of the RFC 8288 ``Link`` header's ``rel="next"`` target
  (Shopify ``page_info``).
* :func:`shape` — only the tool's ``output.fields`` when it declares them;
  arrays along a path are mapped element by element, so ``items.id`` keeps the
  id of every item. Size caps (``tool.output.max_bytes``) are the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from control_plane.connectors.model import Tool

# RFC 8288 §3: Link = #link-value; link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
_LINK = re.compile(r"<([^>]*)>((?:\s*;\s*[^;,]+)*)")
_REL = re.compile(r"""(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;"]+))""", re.I)


def _at(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A response header's value, whatever its letter case; None when absent."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def _next_link(value: str) -> str | None:
    for target, params in _LINK.findall(value):
        for quoted, bare in _REL.findall(params):
            if "next" in (quoted or bare).lower().split():
                return str(target)
    return None


def next_cursor(tool: Tool, body_doc: Any, headers: Mapping[str, str]) -> str:
    """The next page's cursor, or ``""`` at the end."""
    paging = tool.pagination
    if paging is None:
        return ""
    if paging.link_param:
        target = _next_link(header(headers, "Link") or "")
        if target is None:
            return ""
        values = parse_qs(urlsplit(target).query).get(paging.link_param, [])
        return values[0] if values else ""
    if paging.has_more and _at(body_doc, paging.has_more) is not True:
        return ""
    value = _at(body_doc, paging.next_cursor)
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    return str(value)


def _tree(fields: tuple[str, ...]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in fields:
        node = root
        for part in path.split("."):
            node = node.setdefault(part, {})
    return root


_MISSING = object()


def _project(doc: Any, tree: Mapping[str, Any]) -> Any:
    """The parts of ``doc`` on ``tree``'s paths; ``_MISSING`` when it has none of them
    because it is not an object (a scalar where a path goes deeper)."""
    if isinstance(doc, list):
        kept = (_project(item, tree) for item in doc)
        return [item for item in kept if item is not _MISSING]
    if not isinstance(doc, Mapping):
        return _MISSING
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key in doc:
            value = _project(doc[key], sub) if sub else doc[key]
            if value is not _MISSING:
                out[key] = value
    return out


def shape(tool: Tool, body_doc: Any) -> Any:
    """``body_doc`` reduced to the tool's ``output.fields`` (unchanged without them)."""
    if not tool.output.fields:
        return body_doc
    return _project(body_doc, _tree(tool.output.fields))
