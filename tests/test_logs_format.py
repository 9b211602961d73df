"""Log lines for people on a terminal, JSON for everything else; redacted either way."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
import structlog

from control_plane import logs
from control_plane.cli import main
from control_plane.config import Settings

# A credential of each shape the redactor knows, under a harmless key and inside text.
BEARER = "Bearer abcdefghijklmnop.qrstuvwxyz"
PASSWORD = "hunter2-correct-horse"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    logs.configure(level=logging.WARNING)


def _emit() -> None:
    log = structlog.stdlib.get_logger("agentauth.test")
    log.info("upstream_call", header=BEARER, password=PASSWORD, status=200)
    logging.getLogger("aiohttp.test").warning("peer sent %s", BEARER)
    try:
        raise RuntimeError(f"failed with {BEARER}")
    except RuntimeError:
        log.exception("boom")


def _assert_redacted(text: str) -> None:
    assert "abcdefghijklmnop" not in text and PASSWORD not in text
    assert text.count(logs.REDACTED) >= 4


def test_a_pipe_or_file_gets_json_lines() -> None:
    stream = io.StringIO()
    logs.configure(stream=stream)
    _emit()
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == [
        "upstream_call",
        "peer sent [REDACTED]",
        "boom",
    ]
    assert lines[0]["password"] == logs.REDACTED and lines[0]["status"] == 200
    _assert_redacted(stream.getvalue())


def test_a_terminal_gets_columns_for_people() -> None:
    stream = Terminal()
    logs.configure(stream=stream)
    _emit()
    text = stream.getvalue()
    first = text.splitlines()[0]
    assert not first.startswith("{")
    assert "upstream_call" in first and "\x1b[" in first  # coloured on a terminal
    assert "Traceback" in text and "RuntimeError" in text
    _assert_redacted(text)


@pytest.mark.parametrize(("fmt", "tty", "is_json"), [("json", True, True), ("console", False, False)])
def test_the_format_can_be_asked_for(fmt: str, tty: bool, is_json: bool) -> None:
    stream = Terminal() if tty else io.StringIO()
    logs.configure(stream=stream, fmt=fmt)
    _emit()
    first = stream.getvalue().splitlines()[0]
    assert first.startswith("{") == is_json
    assert "\x1b[" not in stream.getvalue() or tty  # no colour codes into a file
    _assert_redacted(stream.getvalue())


def test_audit_fast_lines_follow_the_format() -> None:
    """``info_line`` writes JSON itself; on a terminal it goes through the renderer."""
    logger = logging.getLogger("agentauth.audit.test")
    for stream, is_json in ((io.StringIO(), True), (Terminal(), False)):
        logs.configure(stream=stream)
        logs.info_line(logger, "audit", {"action": "x", "who": BEARER})
        line = stream.getvalue().splitlines()[0]
        assert line.startswith("{") == is_json
        assert "audit" in line and "abcdefghijklmnop" not in line


def test_an_unknown_format_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTAUTH_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="AGENTAUTH_LOG_FORMAT must be json or console"):
        Settings()
    with pytest.raises(ValueError):
        logs.configure(stream=io.StringIO(), fmt="xml")


def test_the_cli_applies_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    monkeypatch.setenv("AGENTAUTH_LOG_FORMAT", "console")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    code = main(["admin", "create-key", "--data-dir", str(tmp_path)])
    assert code == 0
    lines = [line for line in stream.getvalue().splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
