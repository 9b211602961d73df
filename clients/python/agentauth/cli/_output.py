"""Responses as a compact table (the default) or as proto3 JSON (``--output json``).

A watch stream's messages come one line each (:class:`EventLines`): a table
row under one header, or one JSON object per line.
"""

from __future__ import annotations

from typing import Any, TextIO, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from agentauth.cli._request import enum_label

__all__ = ["EventLines", "is_event", "printable", "render"]

# A watch message's bookkeeping: where to resume, and "the backlog is delivered".
_BOOKKEEPING = frozenset({"cursor", "synced"})
# Too long for a table cell; --output json has them.
_WIDE = frozenset({"jwks_json", "input_schema_json", "description", "connect_url"})
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_NUMERIC = frozenset(
    {
        FieldDescriptor.CPPTYPE_INT32,
        FieldDescriptor.CPPTYPE_INT64,
        FieldDescriptor.CPPTYPE_UINT32,
        FieldDescriptor.CPPTYPE_UINT64,
        FieldDescriptor.CPPTYPE_FLOAT,
        FieldDescriptor.CPPTYPE_DOUBLE,
    }
)


def _cell(field: FieldDescriptor, value: Any) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    if field.is_repeated:
        if field.message_type is not None:
            return f"{len(value)} items"
        return ",".join(str(v) for v in value)
    if field.enum_type is not None:
        return enum_label(field.enum_type, value)
    if field.message_type is not None:
        if field.message_type.full_name in (_TIMESTAMP, _DURATION):
            return str(value.ToJsonString()) if value.ByteSize() else ""
        return json_format.MessageToJson(value, indent=None) if value.ByteSize() else ""
    if field.type == FieldDescriptor.TYPE_BOOL:
        return "yes" if value else "no"
    return str(value)


# A table column: the field's path from the row (one level into a nested
# message, e.g. a tool's connection.state) and the field itself.
_Column = tuple[tuple[str, ...], FieldDescriptor]


def _nested(field: FieldDescriptor) -> bool:
    message = field.message_type
    return (
        message is not None
        and not field.is_repeated
        and message.full_name not in (_TIMESTAMP, _DURATION)
    )


def _leaves(descriptor: Descriptor, prefix: tuple[str, ...] = ()) -> list[_Column]:
    columns: list[_Column] = []
    for field in descriptor.fields:
        path = (*prefix, field.name)
        message = field.message_type
        if message is not None and _nested(field) and not prefix:
            columns.extend(_leaves(message, path))
        else:
            columns.append((path, field))
    return columns


def _row_cell(row: Message, column: _Column) -> str:
    path, field = column
    value: Any = row
    for name in path:
        value = getattr(value, name)
    # As in _flatten: zero in a nested message is proto3's "unset".
    if len(path) > 1 and field.cpp_type in _NUMERIC and not value:
        return ""
    return _cell(field, value)


def _columns(rows: list[Message]) -> list[_Column]:
    return [
        (path, f)
        for path, f in _leaves(cast(Descriptor, rows[0].DESCRIPTOR))
        if f.name not in _WIDE
        and not (
            f.message_type is not None
            and f.message_type.full_name == _TIMESTAMP
            and f.name != "create_time"
        )
        and any(_row_cell(r, (path, f)) for r in rows)
    ]


def printable(text: str) -> str:
    """``text`` with control characters escaped: names and labels are set by org
    admins, and an escape sequence in one must not drive the operator's terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _table(rows: list[list[str]], out: TextIO) -> None:
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _flatten(message: Message, prefix: str = "") -> list[list[str]]:
    """``field  value`` pairs, nested messages dotted, empty ones left out."""
    pairs: list[list[str]] = []
    for field in cast(Descriptor, message.DESCRIPTOR).fields:
        value = getattr(message, field.name)
        nested = (
            field.message_type is not None
            and not field.is_repeated
            and field.message_type.full_name not in (_TIMESTAMP, _DURATION)
        )
        if nested:
            pairs.extend(_flatten(value, f"{prefix}{field.name}."))
            continue
        cell = _cell(field, value)
        # Zero in a nested message is proto3's "unset" (rate_limits.burst 0:
        # the server's default), noise in a listing; at the top it is news
        # (revoked_count 0).
        if prefix and field.cpp_type in _NUMERIC and not value:
            continue
        if cell and field.name not in _WIDE:
            pairs.append([prefix + field.name, cell])
    return pairs


def render(response: Message, output: str, out: TextIO, err: TextIO) -> None:
    if output == "json":
        # On a terminal, \u escapes for the same reason as printable; a pipe
        # gets the text as is (the JSON is equally valid either way).
        text = json_format.MessageToJson(response, indent=2, ensure_ascii=out.isatty())
        out.write(text + "\n")
        return
    fields = response.DESCRIPTOR.fields
    lists = [
        f
        for f in fields
        if f.is_repeated
        and f.message_type is not None
        and not f.message_type.GetOptions().map_entry
    ]
    if len(lists) == 1:
        rows = list(getattr(response, lists[0].name))
        if not rows:
            err.write(f"no {lists[0].name.replace('_', ' ')}\n")
        else:
            columns = _columns(rows)
            _table(
                [[".".join(path).upper() for path, _ in columns]]
                + [[_row_cell(r, c) for c in columns] for r in rows],
                out,
            )
        token = getattr(response, "next_page_token", "")
        if token:
            err.write(f"more: --page-token {token}\n")
        return
    # GetAgentResponse{agent}: its fields, not "agent.name", "agent.state", ...
    only = fields[0] if len(fields) == 1 else None
    if only is not None and only.message_type is not None and not only.is_repeated:
        pairs = _flatten(getattr(response, only.name))
    else:
        pairs = _flatten(response)
    if pairs:
        _table(pairs, out)
    else:
        out.write("done\n")


def is_event(message: Message) -> bool:
    """Whether a watch message reports something (not only a synced mark or heartbeat)."""
    return any(f.name not in _BOOKKEEPING for f, _ in message.ListFields())


class EventLines:
    """Writes a watch stream's messages as they come, one line each, flushed at once
    (a pipe into another program sees each event when it happens)."""

    def __init__(self, descriptor: Descriptor, output: str, out: TextIO) -> None:
        self._output = output
        self._out = out
        self._columns = [f for f in descriptor.fields if f.name not in _BOOKKEEPING]
        self._header = output == "table"

    def write(self, message: Message) -> None:
        if self._output == "json":
            text = json_format.MessageToJson(message, indent=None, ensure_ascii=self._out.isatty())
            self._out.write(text + "\n")
        else:
            # Rows cannot be aligned before the events exist: cells are separated
            # by two spaces, and an empty one is "-" so that columns stay countable.
            if self._header:
                self._out.write("  ".join(c.name.upper() for c in self._columns) + "\n")
                self._header = False
            cells = [printable(_cell(c, getattr(message, c.name))) or "-" for c in self._columns]
            self._out.write("  ".join(cells) + "\n")
        self._out.flush()
