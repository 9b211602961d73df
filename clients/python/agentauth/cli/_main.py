"""``agentauth``: the admin CLI, one gRPC call per command.

Exit status: 0 done, 1 refused by the server (or unreachable, or a tool call
that ended in an error), 2 a usage error (bad flags, an unreadable file, no
credential). Errors are one line on stderr; a key or token is never printed.
A watch runs until Ctrl-C, which ends it with status 0.

The shared flags (--target, --admin-key-file, --output, --timeout, --tls) go
before the group or after the verb; after the verb wins. The top-level parser
holds their defaults; each command's parser repeats them with no default of
its own (argparse would otherwise overwrite a value given before the group
with the command's default), its help naming the default instead.
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
from agentauth.cli._commands import COMMANDS, TOKEN, TOOL_STREAM, WATCH, Command
from agentauth.cli._output import render
from agentauth.cli._request import Flag, UsageError, add_flags, build_request, read_secret
from agentauth.cli._streams import ToolCallFailed, WatchState, execute_tool, watch
from agentauth.v1 import (
    admin_pb2,
    connection_pb2,
    token_pb2,
    tool_pb2,
)

__all__ = ["main"]

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
    if "page_token" in cast(Descriptor, _request_type(cmd).DESCRIPTOR).fields_by_name:
        sub.add_argument(
            "--all", action="store_true", help="follow next_page_token to the last page"
        )


def _parser() -> tuple[argparse.ArgumentParser, dict[tuple[str, str], list[Flag]]]:
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
        _command_only(sub, cmd)
        _shared(sub, cmd)
        sub.set_defaults(command=cmd)
    return parser, flags


def _request_type(cmd: Command) -> type[Message]:
    cls: type[Message] = getattr(_MODULES[cmd.service], f"{cmd.rpc}Request")
    return cls


def _response_type(cmd: Command) -> type[Message]:
    cls: type[Message] = getattr(_MODULES[cmd.service], f"{cmd.rpc}Response")
    return cls


def _credential(cmd: Command, args: argparse.Namespace) -> str:
    if cmd.auth == TOKEN:
        if args.token_file:
            return read_secret(args.token_file)
        token = os.environ.get("AGENTAUTH_TOKEN", "").strip()
        if not token:
            raise UsageError("no access token: set AGENTAUTH_TOKEN or pass --token-file")
        return token
    if args.admin_key_file:
        return read_secret(args.admin_key_file)
    key = os.environ.get("AGENTAUTH_ADMIN_KEY", "").strip()
    if not key:
        raise UsageError("no API key: set AGENTAUTH_ADMIN_KEY or pass --admin-key-file")
    return key


def _client(args: argparse.Namespace, credential: str, timeout: float | None) -> ControlPlaneClient:
    credentials = grpc.ssl_channel_credentials() if args.tls else None
    return ControlPlaneClient(args.target, credential, timeout=timeout, credentials=credentials)


async def _call(
    cmd: Command, request: Message, args: argparse.Namespace, credential: str
) -> Message:
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    async with _client(args, credential, timeout) as client:
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


async def _stream(
    cmd: Command,
    request: Message,
    args: argparse.Namespace,
    credential: str,
    out: TextIO,
    err: TextIO,
    state: WatchState,
) -> None:
    # Streams get no default deadline from the client; execute_tool sets its own.
    async with _client(args, credential, None) as client:
        if cmd.stream == TOOL_STREAM:
            await execute_tool(
                client.tools, cast(Any, request), args.timeout, args.output, out, err
            )
            return
        await watch(
            getattr(getattr(client, cmd.service), cmd.rpc),
            request,
            _response_type(cmd),
            max_events=args.max_events,
            stop_after=args.timeout,
            output=args.output,
            out=out,
            err=err,
            state=state,
        )


def main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Runs one command; returns the exit status (the console script exits with it)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser, flags = _parser()
    state = WatchState()
    cmd: Command | None = None
    try:
        args = parser.parse_args(argv)
        cmd = cast(Command, args.command)
        request = build_request(cmd, _request_type(cmd), flags[(cmd.group, cmd.verb)], args)
        credential = _credential(cmd, args)
        if cmd.stream:
            asyncio.run(_stream(cmd, request, args, credential, out, err, state))
            _resume(state, err)
            return 0
        response = asyncio.run(_call(cmd, request, args, credential))
        render(response, args.output, out, err)
    except BrokenPipeError:
        # The reader went away (`agentauth ... | head -1`): it has what it wanted.
        _silence(out)
        return 0
    except UsageError as exc:
        err.write(f"agentauth: {exc}\n")
        return 2
    except ValueError as exc:  # e.g. a key that cannot be a header; the message never holds it
        err.write(f"agentauth: {exc}\n")
        return 2
    except AgentAuthError as exc:
        assert cmd is not None  # only a call raises it
        err.write(f"agentauth: {cmd.group} {cmd.verb}: {exc.reason}: {exc.message}\n")
        return 1
    except ToolCallFailed as exc:
        err.write(f"agentauth: tool execute: {exc}\n")
        return 1
    except KeyboardInterrupt:
        if cmd is not None and cmd.stream == WATCH:
            _resume(state, err)
            return 0  # Ctrl-C is how a watch is meant to end
        return 130
    return 0


def _silence(out: TextIO) -> None:
    """Points a closed stdout at /dev/null, so that flushing it at exit does not
    raise BrokenPipeError again (Python's own advice for SIGPIPE)."""
    if out is sys.stdout:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _resume(state: WatchState, err: TextIO) -> None:
    if state.cursor:
        err.write(f"resume: --cursor {state.cursor}\n")


def console() -> None:
    sys.exit(main())
