"""``agentauth``: the admin CLI, one gRPC call per command.

Exit status: 0 done, 1 refused by the server (or unreachable), 2 a usage
error (bad flags, an unreadable file, no admin key). Errors are one line on
stderr; the admin key is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

import grpc
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from agentauth._client import ControlPlaneClient
from agentauth._errors import AgentAuthError
from agentauth.cli._commands import COMMANDS, Command
from agentauth.cli._output import render
from agentauth.cli._request import Flag, UsageError, add_flags, build_request, read_secret
from agentauth.v1 import (
    admin_pb2,
    connection_pb2,
    token_pb2,
)

__all__ = ["main"]

DEFAULT_TARGET = "127.0.0.1:50051"
_MODULES = {"admin": admin_pb2, "connections": connection_pb2, "tokens": token_pb2}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows ``(default: ...)`` for every option that has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, argparse.SUPPRESS, False) and "%(default)" not in text:
            text += " (default: %(default)s)"
        elif action.option_strings and action.default is None and not action.required:
            text += " (default: unset)"
        return text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit status 2, in one line
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _common(parser: argparse.ArgumentParser) -> None:
    env_target = os.environ.get("AGENTAUTH_TARGET") or DEFAULT_TARGET
    parser.add_argument(
        "--target",
        default=env_target,
        help="HOST:PORT of the control plane's gRPC API (env AGENTAUTH_TARGET)",
    )
    parser.add_argument(
        "--admin-key-file",
        metavar="PATH",
        help="file holding the API key, '-' for stdin (env AGENTAUTH_ADMIN_KEY); "
        "never on the command line, where ps and shell history keep it",
    )
    parser.add_argument(
        "--output", "-o", choices=("table", "json"), default="table", help="output format"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument(
        "--tls", action="store_true", help="TLS with the system's roots instead of plaintext"
    )


def _parser() -> tuple[argparse.ArgumentParser, dict[tuple[str, str], list[Flag]]]:
    parser = _Parser(
        prog="agentauth",
        description="Administer an agentauth control plane over gRPC.",
        epilog="Every command takes --target, --admin-key-file and --output; "
        "`agentauth GROUP VERB --help` lists its flags.",
        formatter_class=_Formatter,
    )
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
                help=f"{_request_type(cmd).DESCRIPTOR.name}.{cmd.positional}",
            )
        flags[(cmd.group, cmd.verb)] = add_flags(
            sub, cmd, cast(Descriptor, _request_type(cmd).DESCRIPTOR)
        )
        sub.add_argument(
            "--request-json",
            metavar="JSON",
            help="the request as proto3 JSON (or @PATH, @- for stdin), for fields "
            "without a flag; flags override it",
        )
        if "page_token" in cast(Descriptor, _request_type(cmd).DESCRIPTOR).fields_by_name:
            sub.add_argument(
                "--all", action="store_true", help="follow next_page_token to the last page"
            )
        _common(sub)
        sub.set_defaults(command=cmd)
    return parser, flags


def _request_type(cmd: Command) -> type[Message]:
    cls: type[Message] = getattr(_MODULES[cmd.service], f"{cmd.rpc}Request")
    return cls


def _admin_key(args: argparse.Namespace) -> str:
    if args.admin_key_file:
        return read_secret(args.admin_key_file)
    key = os.environ.get("AGENTAUTH_ADMIN_KEY", "").strip()
    if not key:
        raise UsageError("no API key: set AGENTAUTH_ADMIN_KEY or pass --admin-key-file")
    return key


async def _call(cmd: Command, request: Message, args: argparse.Namespace, key: str) -> Message:
    credentials = grpc.ssl_channel_credentials() if args.tls else None
    async with ControlPlaneClient(
        args.target, key, timeout=args.timeout, credentials=credentials
    ) as client:
        rpc = getattr(getattr(client, cmd.service), cmd.rpc)
        response: Message = await rpc(request)
        while getattr(args, "all", False) and (token := getattr(response, "next_page_token", "")):
            setattr(request, "page_token", token)  # noqa: B010 - any List*Request
            page = await rpc(request)
            # MergeFrom appends the repeated field; an empty (last) token would
            # not overwrite the previous one, so that is cleared first.
            response.ClearField("next_page_token")
            response.MergeFrom(page)
        return response


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Runs one command; returns the exit status (the console script exits with it)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser, flags = _parser()
    try:
        args = parser.parse_args(argv)
        cmd: Command = args.command
        request = build_request(cmd, _request_type(cmd), flags[(cmd.group, cmd.verb)], args)
        key = _admin_key(args)
        response = asyncio.run(_call(cmd, request, args, key))
    except UsageError as exc:
        err.write(f"agentauth: {exc}\n")
        return 2
    except ValueError as exc:  # e.g. a key that cannot be a header; the message never holds it
        err.write(f"agentauth: {exc}\n")
        return 2
    except AgentAuthError as exc:
        err.write(f"agentauth: {cmd.group} {cmd.verb}: {exc.reason}: {exc.message}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    render(response, args.output, out, err)
    return 0


def console() -> None:
    sys.exit(main())
