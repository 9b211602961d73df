"""Issue 13, start-up: a refusal to start is one clean line that says what to do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _serve(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    return subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--data-dir", str(tmp_path / "d"), *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_grpc_port_in_use_is_one_line_and_closes_what_it_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--grpc-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"control-plane: cannot listen for gRPC on 127.0.0.1:{port}: Address already in use"
    )
