"""The argument parser: a sub-command per row of the command table.

The shared flags (--target, --admin-key-file, --output, --timeout, --tls) go
before the group or after the verb; after the verb wins. The top-level parser
holds their defaults; each command's parser repeats them with no default of
its own (argparse would otherwise overwrite a value given before the group
with the command's default), its help naming the default instead.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from agentauth.cli._commands import COMMANDS, TOKEN, TOOL_STREAM, WATCH, Command
from agentauth.cli._request import Flag, UsageError, add_flags
from agentauth.v1 import (
    admin_pb2,
    connection_pb2,
    token_pb2,
    tool_pb2,
)

__all__ = ["DEFAULT_TARGET", "DEFAULT_TIMEOUT", "build_parser", "request_type", "response_type"]

DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT = 10.0
_MODULES = {
    "admin": admin_pb2,
    "connections": connection_pb2,
    "tokens": token_pb2,
    "tools": tool_pb2,
}
_TIMEOUT_HELP = {
    "top": f"seconds per call (default: {DEFAULT_TIMEOUT}; tool execute: the server's 60; "
    "a watch: until Ctrl-C)",
    "": f"seconds per call (default: {DEFAULT_TIMEOUT})",
    TOOL_STREAM: "seconds the whole call may take, sent to the server (at most 120) "
    "(default: unset: the server's 60)",
    WATCH: "stop watching after SECONDS, with exit status 0 (default: unset: until Ctrl-C)",
}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: ...)`` for every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text:  # said by the help itself
            return text
        if action.default not in (None, argparse.SUPPRESS, False) and "%(default)" not in text:
            text += " (default: %(default)s)"
        elif action.option_strings and action.default is None and not action.required:
            text += " (default: unset)"
        return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit status 2, in one line
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _shared(parser: argparse.ArgumentParser, cmd: Command | None = None) -> None:
    """The shared flags: on the top-level parser (``cmd`` None) with their defaults;
    on a command's parser without (SUPPRESS: set only when given), help saying them."""
    target = os.environ.get("AGENTAUTH_TARGET") or DEFAULT_TARGET

    def add(*names: str, default: Any, shown: str, help: str, **kwargs: Any) -> None:
        if cmd is None:
            parser.add_argument(*names, default=default, help=help, **kwargs)
        else:
            suffix = f" (default: {shown})" if shown else ""
            parser.add_argument(*names, default=argparse.SUPPRESS, help=help + suffix, **kwargs)

    add(
        "--target",
        default=target,
        shown=target,
        help="HOST:PORT of the control plane's gRPC API (env AGENTAUTH_TARGET)",
    )
    if cmd is None or cmd.auth != TOKEN:
        add(
            "--admin-key-file",
            default=None,
            shown="unset",
            metavar="PATH",
            help="file holding the API key (or a service-account token), '-' for stdin "
            "(env AGENTAUTH_ADMIN_KEY); never on the command line, where ps and shell "
            "history keep it",
        )
    add(
        "--output",
        "-o",
        default="table",
        shown="table",
        choices=("table", "json"),
        help="output format",
    )
    add(
        "--timeout",
        default=None,
        shown="",
        type=float,
        help=_TIMEOUT_HELP[cmd.stream] if cmd else _TIMEOUT_HELP["top"],
    )
    add(
        "--tls",
        default=False,
        shown="",
        action="store_true",
        help="TLS with the system's roots instead of plaintext",
    )


def _command_only(sub: argparse.ArgumentParser, cmd: Command) -> None:
    """Flags of one kind of command besides the request's fields."""
    if cmd.auth == TOKEN:
        sub.add_argument(
            "--token-file",
            metavar="PATH",
            help="file holding the access token (service-account or delegated; an "
            "admin key runs no tools), '-' for stdin (env AGENTAUTH_TOKEN)",
        )
    if cmd.stream == WATCH:
        sub.add_argument(
            "--max-events",
            type=int,
            metavar="N",
            help="stop after N events (synced marks and heartbeats do not count)",
        )
    if "page_token" in cast(Descriptor, request_type(cmd).DESCRIPTOR).fields_by_name:
        sub.add_argument(
            "--all", action="store_true", help="follow next_page_token to the last page"
        )


def build_parser() -> tuple[argparse.ArgumentParser, dict[tuple[str, str], list[Flag]]]:
    parser = _Parser(
        prog="agentauth",
        description="Administer an agentauth control plane over gRPC.",
        epilog="The options above go before GROUP or after VERB; "
        "`agentauth GROUP VERB --help` lists a command's own flags.",
        formatter_class=_Formatter,
    )
    _shared(parser)
    groups = parser.add_subparsers(
        dest="group", metavar="GROUP", required=True, parser_class=_Parser
    )
    verbs: dict[str, argparse._SubParsersAction[Any]] = {}
    flags: dict[tuple[str, str], list[Flag]] = {}
    for cmd in COMMANDS:
        if cmd.group not in verbs:
            group = groups.add_parser(
                cmd.group,
                help=f"{cmd.group.replace('-', ' ')} commands",
                formatter_class=_Formatter,
            )
            verbs[cmd.group] = group.add_subparsers(
                dest="verb", metavar="VERB", required=True, parser_class=_Parser
            )
        sub = verbs[cmd.group].add_parser(
            cmd.verb, help=cmd.help, description=cmd.help, formatter_class=_Formatter
        )
        if cmd.positional:
            leaf = cmd.positional.rsplit(".", 1)[-1]
            sub.add_argument(
                "positional",
                metavar=leaf.upper(),
                help=f"{request_type(cmd).DESCRIPTOR.name}.{cmd.positional}",
            )
        flags[(cmd.group, cmd.verb)] = add_flags(
            sub, cmd, cast(Descriptor, request_type(cmd).DESCRIPTOR)
        )
        sub.add_argument(
            "--request-json",
            metavar="JSON",
            help="the request as proto3 JSON (or @PATH, @- for stdin), for fields "
            "without a flag; flags override it",
        )
        _command_only(sub, cmd)
        _shared(sub, cmd)
        sub.set_defaults(command=cmd)
    return parser, flags


def request_type(cmd: Command) -> type[Message]:
    cls: type[Message] = getattr(_MODULES[cmd.service], f"{cmd.rpc}Request")
    return cls


def response_type(cmd: Command) -> type[Message]:
    cls: type[Message] = getattr(_MODULES[cmd.service], f"{cmd.rpc}Response")
    return cls
