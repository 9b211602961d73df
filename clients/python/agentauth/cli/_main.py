"""``agentauth``: the admin CLI, one gRPC call per command.

Exit status: 0 done, 1 refused by the server (or unreachable, or a tool call
that ended in an error), 2 a usage error (bad flags, an unreadable file, no
credential). Errors are one line on stderr; a key or token is never printed.
A watch runs until Ctrl-C, which ends it with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

import grpc
from google.protobuf.message import Message

from agentauth._client import ControlPlaneClient
from agentauth._errors import AgentAuthError
from agentauth.cli._commands import TOKEN, TOOL_STREAM, WATCH, Command
from agentauth.cli._output import render
from agentauth.cli._parser import DEFAULT_TIMEOUT, build_parser, request_type, response_type
from agentauth.cli._request import UsageError, build_request, read_secret
from agentauth.cli._streams import ToolCallFailed, WatchState, execute_tool, watch

__all__ = ["main"]


def _credential(cmd: Command, args: argparse.Namespace) -> str:
    if cmd.auth == TOKEN:
        return _secret(args.token_file, "AGENTAUTH_TOKEN", "--token-file", "access token")
    return _secret(args.admin_key_file, "AGENTAUTH_ADMIN_KEY", "--admin-key-file", "API key")


def _secret(path: str | None, env: str, flag: str, what: str) -> str:
    """The secret from the file ``flag`` names (``-``: stdin), else from ``env``."""
    if path:
        return read_secret(path)
    value = os.environ.get(env, "").strip()
    if not value:
        raise UsageError(f"no {what}: set {env} or pass {flag}")
    return value


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
            response_type(cmd),
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
    parser, flags = build_parser()
    state = WatchState()
    cmd: Command | None = None
    try:
        args = parser.parse_args(argv)
        cmd = cast(Command, args.command)
        request = build_request(cmd, request_type(cmd), flags[(cmd.group, cmd.verb)], args)
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
    except (UsageError, ValueError) as exc:
        # ValueError: e.g. a key that cannot be a header (the message never holds it).
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
