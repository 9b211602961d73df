"""Flags derived from a request message's descriptor, and the request built from them.

Scalars become ``--field``; repeated scalars repeat the flag; maps take
``KEY=VALUE``; enums offer their value names without the type's prefix, in
lower case (``--kind private-key-jwt``); a ``Duration`` takes ``3600s``; a
``Struct`` (a tool call's arguments) takes a JSON object or ``@PATH``; the
fields of the resource a request carries (``CreateUserRequest.user``) are
flattened into the same flags. Secret fields take ``--field-file PATH`` (``-``
for stdin) instead, so a secret never sits in the shell history or in ``ps``.
Anything without a flag (repeated messages, e.g. a tool policy's
constraints) goes in ``--request-json``, which the flags then override.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from agentauth.cli._commands import HINTS, OUTPUT_ONLY, Command

__all__ = [
    "Flag",
    "UsageError",
    "add_flags",
    "build_request",
    "enum_choices",
    "enum_label",
    "read_secret",
]

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_FIELD_MASK = "google.protobuf.FieldMask"
_STRUCT = "google.protobuf.Struct"
_MAX_DEPTH = 2  # Organization.rate_limits.burst is as deep as a flag goes


class UsageError(Exception):
    """A problem with the command line or its input files: exit status 2."""


@dataclass(frozen=True)
class Flag:
    path: tuple[str, ...]
    field: FieldDescriptor
    dest: str
    secret: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _enum_prefix(enum: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_choices(enum: EnumDescriptor) -> list[str]:
    prefix = _enum_prefix(enum)
    return [
        v.name.removeprefix(prefix).lower().replace("_", "-")
        for v in enum.values
        if not v.name.endswith("_UNSPECIFIED")
    ]


def enum_label(enum: EnumDescriptor, number: int) -> str:
    """The choice a value is shown as, ``""`` for an unset or unknown one."""
    value = enum.values_by_number.get(number)
    if value is None or value.name.endswith("_UNSPECIFIED"):
        return ""
    return value.name.removeprefix(_enum_prefix(enum)).lower().replace("_", "-")


def _enum_number(enum: EnumDescriptor, choice: str) -> int:
    value = enum.values_by_name.get(choice) or enum.values_by_name.get(
        _enum_prefix(enum) + choice.upper().replace("-", "_")
    )
    if value is None:
        raise UsageError(f"{choice!r} is not one of {', '.join(enum_choices(enum))}")
    return int(value.number)


def _walk(cmd: Command, descriptor: Descriptor, prefix: tuple[str, ...]) -> Iterator[Flag]:
    depth = len(prefix)
    for field in descriptor.fields:
        path = (*prefix, field.name)
        dotted = ".".join(path)
        if (
            dotted in (cmd.positional, cmd.update_mask)
            or dotted in cmd.hide
            or dotted in cmd.fixed
            or (depth > 0 and (field.name == "name" or field.name in OUTPUT_ONLY))
        ):
            continue
        message = field.message_type
        if message is not None and not _is_map(field):
            if message.full_name in (_TIMESTAMP, _FIELD_MASK):
                continue
            if message.full_name not in (_DURATION, _STRUCT):
                if not _is_repeated(field) and depth < _MAX_DEPTH:
                    yield from _walk(cmd, message, path)
                continue
        yield Flag(path, field, "f_" + "__".join(path), dotted in cmd.secrets)


def _flag_name(cmd: Command, flag: Flag, taken: set[str]) -> str:
    leaf = cmd.rename.get(flag.field.name, flag.field.name)
    name = leaf if leaf not in taken else "-".join(flag.path)
    taken.add(name)
    name = name.replace("_", "-")
    return f"--{name}-file" if flag.secret else f"--{name}"


def add_flags(parser: argparse.ArgumentParser, cmd: Command, descriptor: Descriptor) -> list[Flag]:
    """Adds one option per settable field of ``descriptor``; returns them."""
    flags = list(_walk(cmd, descriptor, ()))
    taken: set[str] = set()
    for flag in flags:
        field = flag.field
        owner = field.containing_type
        where = f"{owner.name if owner else ''}.{field.name}"
        if hint := HINTS.get(where):
            where = f"{where}: {hint}"
        kwargs: dict[str, Any] = {"dest": flag.dest, "default": None}
        required = flag.dotted in cmd.required
        if flag.secret:
            kwargs.update(metavar="PATH", help=f"file holding {where} ('-': stdin)")
        elif _is_map(field):
            kwargs.update(action="append", metavar="KEY=VALUE", help=f"{where}, repeatable")
        elif field.enum_type is not None:
            kwargs.update(choices=enum_choices(field.enum_type), help=where)
        elif field.message_type is not None and field.message_type.full_name == _STRUCT:
            kwargs.update(metavar="JSON", help=f"{where}: a JSON object, or @PATH (@- for stdin)")
        elif field.message_type is not None:  # Duration
            kwargs.update(metavar="SECONDS", help=f"{where}, e.g. 3600s")
        elif field.type == FieldDescriptor.TYPE_BOOL:
            kwargs.update(action=argparse.BooleanOptionalAction, help=where)
        elif _is_repeated(field):
            kwargs.update(action="append", metavar="VALUE", help=f"{where}, repeatable")
        else:
            if field.cpp_type in (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_INT64):
                kwargs["type"] = int
            elif field.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
                kwargs["type"] = float
            kwargs.update(metavar=field.name.split("_")[-1].upper(), help=where)
        if required:
            kwargs["required"] = True
        parser.add_argument(_flag_name(cmd, flag, taken), **kwargs)
    return flags


def read_secret(path: str) -> str:
    """The secret in ``path`` (``-``: stdin) without its trailing newline."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise UsageError(f"{'stdin' if path == '-' else path} is empty")
    return secret


def _json_text(value: str) -> str:
    """``value``, or the text of the file it names as ``@PATH`` (``@-``: stdin)."""
    return read_secret(value[1:]) if value.startswith("@") else value


def _set(request: Message, path: tuple[str, ...], field: FieldDescriptor, value: Any) -> None:
    parent = request
    for part in path[:-1]:
        parent = getattr(parent, part)
    name = path[-1]
    if _is_map(field):
        target = getattr(parent, name)
        for item in value:
            key, sep, val = item.partition("=")
            if not sep:
                raise UsageError(f"--{name.replace('_', '-')} takes KEY=VALUE, got {item!r}")
            target[key] = val
    elif field.message_type is not None and field.message_type.full_name == _DURATION:
        text = str(value)
        try:
            getattr(parent, name).FromJsonString(text if text.endswith("s") else text + "s")
        except ValueError:
            raise UsageError(f"{text!r} is not a duration like 3600s") from None
    elif field.message_type is not None and field.message_type.full_name == _STRUCT:
        try:
            json_format.Parse(_json_text(str(value)), getattr(parent, name))
        except json_format.ParseError as err:
            raise UsageError(f"{name}: not a JSON object: {err}") from None
    elif field.enum_type is not None:
        setattr(parent, name, _enum_number(field.enum_type, str(value)))
    elif _is_repeated(field):
        getattr(parent, name).extend(value)
    else:
        setattr(parent, name, value)


def _field_at(descriptor: Descriptor, path: tuple[str, ...]) -> FieldDescriptor:
    field = None
    for part in path:
        field = descriptor.fields_by_name[part]
        if field.message_type is not None:
            descriptor = field.message_type
    assert field is not None
    return field


def build_request(
    cmd: Command, request_type: type[Message], flags: list[Flag], args: argparse.Namespace
) -> Message:
    request = request_type()
    # The stubs type DESCRIPTOR as a union with upb's class; it is the same API.
    descriptor = cast(Descriptor, request.DESCRIPTOR)
    raw = getattr(args, "request_json", None)
    if raw:
        text = _json_text(raw)
        try:
            json_format.Parse(text, request)
        except json_format.ParseError as err:
            raise UsageError(f"--request-json: {err}") from None
    if cmd.positional:
        path = tuple(cmd.positional.split("."))
        _set(request, path, _field_at(descriptor, path), args.positional)
    given: list[str] = []
    for flag in flags:
        value = getattr(args, flag.dest)
        if value is None:
            continue
        if flag.secret:
            value = read_secret(value)
        _set(request, flag.path, flag.field, value)
        given.append(flag.dotted)
    for dotted, value in cmd.fixed.items():
        path = tuple(dotted.split("."))
        _set(request, path, _field_at(descriptor, path), value)
    if cmd.update_mask:
        if not given:
            raise UsageError("nothing to change: give at least one flag")
        mask = getattr(request, cmd.update_mask)
        # Paths name the resource's own fields: "organization.display_name" ->
        # "display_name", and "organization.rate_limits.burst" -> "rate_limits"
        # (the server replaces a nested message whole, AIP-134).
        paths = dict.fromkeys(p.split(".")[1] for p in given if "." in p)
        mask.paths.extend(paths)
    return request
