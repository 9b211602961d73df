"""Issue 13, the CLI's help: every flag says what it does and its default, no reST
markup leaks into the text, and the sandbox shows a working ``/issue`` example."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.cli import _parser as cli_parser
from control_plane.cli import main
from control_plane.sandbox.__main__ import (
    _IDP_FIELDS,
    _K8S_FIELDS,
    _SPIFFE_FIELDS,
    EXAMPLE_BODIES,
    _check_body,
)
from control_plane.sandbox.__main__ import _parser as sandbox_parser

ROOT = Path(__file__).parents[1]


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")
        else:
            yield path, action


PARSERS = {"control-plane": cli_parser(), "sandbox": sandbox_parser("control-plane sandbox")}


@pytest.mark.parametrize("which", sorted(PARSERS))
def test_every_flag_has_help(which: str) -> None:
    missing = [
        f"{path} {action.dest}"
        for path, action in _walk(PARSERS[which], which)
        if action.help is None
    ]
    assert missing == []


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_shows_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys)
    assert "``" not in text and ":data:" not in text
    assert "serve" in text and "AGENTAUTH_" in text


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(_help(capsys, "serve").split())  # argparse wraps lines
    for default in ("default 127.0.0.1:50051", "default 127.0.0.1:8080", "default auto"):
        assert default in text
    assert "AGENTAUTH_ISSUER" in text


def test_sandbox_help_names_the_command_it_was_run_as(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(capsys, "sandbox").startswith("usage: control-plane sandbox ")
    text = _help(capsys, "sandbox", "kubernetes")
    assert "curl -s http://127.0.0.1:8701/issue -d '" in text


SPECS = {"kubernetes": _K8S_FIELDS, "spiffe": _SPIFFE_FIELDS, "okta": _IDP_FIELDS, "entra": _IDP_FIELDS}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_the_example_body_is_one_the_emulator_accepts(kind: str) -> None:
    _check_body(json.loads(EXAMPLE_BODIES[kind]), SPECS[kind])


@pytest.mark.slow
def test_the_startup_example_mints_a_token() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "control_plane", "sandbox", "okta", "--port", "0"],
        cwd=ROOT, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(30, proc.kill)  # no example line must not hang the test
    watchdog.start()
    try:
        assert proc.stdout is not None
        example = ""
        for line in proc.stdout:
            if line.startswith("example: "):
                example = line.removeprefix("example: ").strip()
                break
        # curl -s URL -d 'BODY': POST the same body to the same URL.
        _, _, url, _, body = example.split(" ", 4)
        assert example.startswith("curl -s http://127.0.0.1:") and body[0] == body[-1] == "'"
        request = urllib.request.Request(url, data=body[1:-1].encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.load(answer)["token"].count(".") == 2
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.communicate(timeout=20)
