"""Our HTTP token exchange against a peer authorization server: node oidc-provider 9.13.3.

Ours: ``control-plane serve`` on a throwaway PostgreSQL database; ``POST /oauth2/token``
replays one RFC 8693 exchange (a sandbox Kubernetes workload token, RS256, for a
service-account token, ES256 ``at+jwt``; see bench/_workload.py). Peer: oidc-provider
(installed with npm into --cache-dir, reused when present) started from
bench/oidc_provider_peer.mjs on loopback; ``POST /token`` replays a client_credentials
request of one static client (client_secret_post) for an ES256 ``at+jwt`` access token
with the same scope, audience and lifetime. Floors: our ``GET /healthz`` and the peer's
discovery document.

One wrk (closed loop, its own process) drives all four in alternating rounds at c=1
(latency) and c=32 (throughput); every response must be a 200 carrying an access token
(or the floor's body). Server CPU per round comes from /proc (the server process and its
descendants; our PostgreSQL backends separately), giving requests per server-CPU-second.
Prints a table and ours/peer ratios: QPS, per core (goal >= 1.0), and with --workers N
the whole box (goal >= 1.5), a row skipped when ``serve`` does not accept --workers.
Reports, never gates; a run with failed responses says so and exits 1.

    python -m bench.peer_oidc_provider [--seconds 5] [--rounds 5] [--workers N]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

from bench._harness import cluster_on_postgres, free_port, parser, serve_accepts
from bench._load import (
    Result,
    Target,
    alternate,
    database_backends,
    ensure_tool,
    print_table,
    process_tree,
    verdict,
    wrk,
)
from bench._workload import AUDIENCE, SCOPE, workload_exchange

PEER = "oidc-provider"
PEER_VERSION = "9.13.3"
SERVER_JS = Path(__file__).with_name("oidc_provider_peer.mjs")
PER_CORE_GOAL = 1.0
WHOLE_BOX_GOAL = 1.5


def install_peer(cache: Path) -> None:
    """oidc-provider in ``cache``/node_modules (installed once), and our server file."""
    installed = cache / "node_modules" / PEER / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == PEER_VERSION:
        print(f"peer: {PEER} {PEER_VERSION} already in {cache}")
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is needed to install the peer")
        cache.mkdir(parents=True, exist_ok=True)
        # A package.json of its own keeps npm from adopting a parent directory's.
        (cache / "package.json").write_text('{"private": true}\n')
        print(f"peer: installing {PEER}@{PEER_VERSION} with npm into {cache}", flush=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--save-exact", f"{PEER}@{PEER_VERSION}"],
            cwd=cache,
            check=True,
            capture_output=True,
        )
    # Node resolves `import 'oidc-provider'` from the importing file's directory.
    shutil.copyfile(SERVER_JS, cache / SERVER_JS.name)


@contextlib.contextmanager
def peer_server(
    node: str, cache: Path, client_secret: str, ttl: int
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Yields (base URL, process) of the peer issuer on a free loopback port."""
    port = free_port()
    log = (cache / "peer.log").open("w")
    proc = subprocess.Popen(
        [node, SERVER_JS.name, str(port), client_secret, AUDIENCE, str(ttl)],
        cwd=cache,
        env={**os.environ, "NODE_ENV": "production"},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("listening"):
            proc.wait(timeout=10)
            raise SystemExit(f"the peer did not start:\n{(cache / 'peer.log').read_text()}")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def issue_once(url: str, body: bytes) -> dict[str, object]:
    """One token request, checked: a 200 with an ES256 ``at+jwt`` access token."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, data=body, headers=form)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            answer: dict[str, object] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{url}: {exc.code} {exc.read()[:300]!r}") from None
    token = str(answer.get("access_token", ""))
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    if header.get("alg") != "ES256" or header.get("typ") != "at+jwt":
        raise SystemExit(f"{url}: expected an ES256 at+jwt access token, got header {header}")
    return answer


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per target and concurrency")
    ap.add_argument(
        "--workers",
        type=int,
        default=0,
        help="also measure `control-plane serve --workers N` (the whole-box row)",
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "agentauth-bench" / PEER,
        help="where npm installs the peer (reused when present)",
    )
    ap.add_argument("--node", default="node", help="the node binary that runs the peer")
    args = ap.parse_args()

    ensure_tool("wrk", "wrk")
    install_peer(args.cache_dir)
    node_version = subprocess.run(
        [args.node, "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    serve_args: list[tuple[str, ...]] = []
    skipped = ""
    if args.workers:
        if serve_accepts("--workers"):
            serve_args = [(), ("--workers", str(args.workers))]
        else:
            skipped = (
                f"whole-box row (--workers {args.workers}) skipped: "
                "`control-plane serve` does not accept --workers"
            )
            print(skipped)

    one, cores = os.getloadavg()[0], os.cpu_count()
    print(f"machine: {cores} CPUs, load average {one:.2f} at start")
    cluster = cluster_on_postgres(args.database_url, max(1, len(serve_args)), serve_args=serve_args)
    with cluster as (replicas, key):
        fixture = asyncio.run(workload_exchange(replicas[0].target, key))
        ours = issue_once(replicas[0].http + "/oauth2/token", fixture.form())
        ttl = int(str(ours["expires_in"]))
        client_secret = secrets.token_urlsafe(32)
        peer_form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": "bench",
                "client_secret": client_secret,
                "scope": SCOPE,
                "resource": AUDIENCE,
            }
        ).encode()
        with peer_server(args.node, args.cache_dir, client_secret, ttl) as (peer, peer_proc):
            issue_once(peer + "/token", peer_form)
            print(
                f"ours: control-plane serve (Python {sys.version.split()[0]}) on PostgreSQL, "
                f"token exchange; peer: {PEER} {PEER_VERSION} on node {node_version}, "
                f"client_credentials; both ES256 at+jwt, scope {SCOPE}, aud {AUDIENCE}, "
                f"{ttl}s"
            )
            print(
                f"load: wrk, closed loop; {args.rounds} alternating rounds of "
                f"{args.seconds:.0f}s per target at c=1 and c=32"
            )
            server = replicas[0]
            assert server.proc is not None
            db = database_backends(server.database_url)
            targets = [
                Target(
                    "ours exchange /oauth2/token",
                    wrk(server.http + "/oauth2/token", fixture.form(), '"access_token"'),
                    process_tree(server.proc.pid),
                    db,
                ),
                Target(
                    "peer client_credentials /token",
                    wrk(peer + "/token", peer_form, '"access_token"'),
                    process_tree(peer_proc.pid),
                ),
                Target(
                    "ours GET /healthz",
                    wrk(server.http + "/healthz", expect='"ok"'),
                    process_tree(server.proc.pid),
                    db,
                ),
                Target(
                    "peer GET discovery",
                    wrk(peer + "/.well-known/openid-configuration", expect='"issuer"'),
                    process_tree(peer_proc.pid),
                ),
            ]
            if serve_args:
                box = replicas[1]
                assert box.proc is not None
                issue_once(box.http + "/oauth2/token", fixture.form())
                targets.append(
                    Target(
                        f"ours exchange, --workers {args.workers}",
                        wrk(box.http + "/oauth2/token", fixture.form(), '"access_token"'),
                        process_tree(box.proc.pid),
                        db,
                        concurrencies=(32,),
                    )
                )
            results, elsewhere = alternate(targets, (1, 32), args.rounds, args.seconds)
    print()
    print_table(results)
    print()
    report(results, targets, skipped, elsewhere)
    print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
    if any(r.failures for r in results.values()):
        print("THIS RUN HAD FAILED RESPONSES: its figures are not valid")
        raise SystemExit(1)


def report(
    results: dict[tuple[str, int], Result], targets: list[Target], skipped: str, elsewhere: float
) -> None:
    ours, peer, ours_floor, peer_floor = (results[(t.name, 32)] for t in targets[:4])
    ours1, peer1 = results[(targets[0].name, 1)], results[(targets[1].name, 1)]
    per_core = ours.per_core / peer.per_core
    print(f"c=32 ours/peer QPS:                        {ours.qps / peer.qps:.2f}")
    print(
        f"c=32 ours/peer per core (server processes): {per_core:.2f}"
        f"  (goal >= {PER_CORE_GOAL}: {verdict(per_core, PER_CORE_GOAL, True)})"
    )
    print(
        "c=32 ours/peer per core, our PostgreSQL backends counted as ours: "
        f"{ours.per_core_with_database / peer.per_core:.2f}"
    )
    if len(targets) > 4:
        box = results[(targets[4].name, 32)]
        whole = box.qps / peer.qps
        print(
            f"c=32 whole box, ours ({targets[4].name}) / peer QPS: {whole:.2f}"
            f"  (goal >= {WHOLE_BOX_GOAL}: {verdict(whole, WHOLE_BOX_GOAL, True, elsewhere)})"
        )
    else:
        print(f"c=32 whole box: {skipped or 'not measured (pass --workers N)'}")
    print(
        f"c=1  p50 ours {ours1.p50_ms:.2f} ms, peer {peer1.p50_ms:.2f} ms "
        f"(ours/peer {ours1.p50_ms / peer1.p50_ms:.2f}); p99 ours {ours1.p99_ms:.2f} ms, "
        f"peer {peer1.p99_ms:.2f} ms"
    )
    print(
        f"c=32 token QPS / floor QPS: ours {ours.qps / ours_floor.qps:.2f}, "
        f"peer {peer.qps / peer_floor.qps:.2f}"
    )


if __name__ == "__main__":
    main()
