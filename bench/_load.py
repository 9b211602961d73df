"""Load as an outside client makes it, and the server CPU it costs.

The load generators are C programs in their own processes, so that on a 2-core
machine they take little of what the servers under test need: ``wrk`` for
HTTP/1.1 (a Lua hook checks every response's status and body) and ``h2load`` for
gRPC over h2c (a framed request body replayed as is; ``grpc-status`` travels in
trailers that h2load does not read, so the server's own per-code counters check
those). Both are closed loop: ``c`` connections, one request in flight on each.

Targets are measured in alternating rounds (A, B, C, A, B, C, ...) so that a
burst of noise from other work on the machine lands on all of them alike. Around
each round the CPU time (utime + stime from ``/proc/<pid>/stat``) of the server
process and its descendants is read, and of the PostgreSQL backends serving it,
which gives requests per server-CPU-second: throughput per core.
"""

from __future__ import annotations

import atexit
import math
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")

CpuSample = dict[int, float]  # pid -> CPU seconds used so far
BUSY_ELSEWHERE = 0.25  # cores of other work above which wall-time figures are suspect


def ensure_tool(binary: str, debian_package: str) -> str:
    """The path of ``binary``, installing its Debian package first if it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    print(f"{binary} is missing: installing Debian package {debian_package} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", debian_package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(f"{debian_package} installed but {binary} is not on PATH")
    return found


# -- CPU time ------------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> Callable[[], CpuSample]:
    """A sampler of ``pid`` and every process descending from it (e.g. workers)."""

    def sample() -> CpuSample:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (s := _stat(int(entry))) is not None:
                stats[int(entry)] = s
        tree, frontier = {pid}, [pid]
        while frontier:
            parent = frontier.pop()
            for child, (ppid, _) in stats.items():
                if ppid == parent and child not in tree:
                    tree.add(child)
                    frontier.append(child)
        return {p: stats[p][1] for p in tree if p in stats}

    return sample


def database_backends(database_url: str) -> Callable[[], CpuSample]:
    """A sampler of the PostgreSQL backends connected to the database of
    ``database_url`` (PostgreSQL on this machine), other than its own."""
    import psycopg

    conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
    conn.autocommit = True

    def sample() -> CpuSample:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        return {pid: s[1] for (pid,) in rows if (s := _stat(pid)) is not None}

    return sample


def used(before: CpuSample, after: CpuSample) -> float:
    """CPU seconds spent between two samples by the processes alive at the second
    (a process that started in between counts whole; one that ended is lost)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


# -- load generators -----------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What one load-generator run reports."""

    requests: int  # completed within the measured duration
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # wrong status or body, socket errors, timeouts
    first_failure: str
    client_cpu: float  # CPU seconds of the load generator itself

    @property
    def qps(self) -> float:
        return self.requests / self.seconds


Run = Callable[[int, float], Load]  # (concurrency, seconds) -> Load

_WRK_LUA = r"""
-- args: BODY_FILE|- EXPECTED_SUBSTRING|""
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  bad, first_bad, expect = 0, "", args[2] or ""
  if args[1] ~= "-" then
    local f = assert(io.open(args[1], "rb"))
    wrk.method, wrk.body = "POST", f:read("*a")
    f:close()
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end
function response(status, headers, body)
  if status ~= 200 or (expect ~= "" and not string.find(body, expect, 1, true)) then
    bad = bad + 1
    if first_bad == "" then first_bad = status .. " " .. string.sub(body, 1, 200) end
  end
end
function done(summary, latency, requests)
  local b, fb = 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    if fb == "" then fb = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bad=%d sockerr=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, b, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
  if fb ~= "" then io.write("FIRSTBAD " .. string.gsub(fb, "\n", " ") .. "\n") end
end
"""

_scratch: Path | None = None


def _scratch_file(name: str, content: bytes) -> Path:
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="agentauth-bench-"))
        atexit.register(shutil.rmtree, _scratch, True)
    path = _scratch / name
    path.write_bytes(content)
    return path


def _run_child(argv: Sequence[str]) -> tuple[str, float]:
    """stdout and CPU seconds of a child process run to completion. The CPU is read
    from RUSAGE_CHILDREN, which only counts reaped children: the servers under test
    are reaped at the end, so between the two reads only this child is."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, cpu


def wrk(url: str, body: bytes | None = None, expect: str = "", headers: Sequence[str] = ()) -> Run:
    """``wrk`` GETs ``url`` (or POSTs the form ``body``) with the extra ``headers``
    (``"Name: value"``); a response counts as a failure unless it is a 200 whose body
    contains ``expect``."""
    binary = ensure_tool("wrk", "wrk")
    script = _scratch_file("check.lua", _WRK_LUA.encode())
    body_arg = "-" if body is None else str(_scratch_file(f"body-{abs(hash(url))}", body))

    def run(concurrency: int, seconds: float) -> Load:
        out, cpu = _run_child(
            [
                binary,
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                *(arg for header in headers for arg in ("-H", header)),
                "-s",
                str(script),
                url,
                "--",
                body_arg,
                expect,
            ]
        )
        result = first = ""
        for line in out.splitlines():
            if line.startswith("RESULT "):
                result = line
            elif line.startswith("FIRSTBAD "):
                first = line.removeprefix("FIRSTBAD ")
        if not result:
            raise RuntimeError(f"wrk printed no result:\n{out[-1000:]}")
        r = {k: int(v) for k, v in (kv.split("=") for kv in result.split()[1:])}
        return Load(
            requests=r["requests"],
            seconds=r["duration_us"] / 1e6,
            p50_ms=r["p50_us"] / 1e3,
            p99_ms=r["p99_us"] / 1e3,
            failures=r["bad"] + r["sockerr"] + r["timeout"],
            first_failure=first or ("socket errors" if r["sockerr"] else ""),
            client_cpu=cpu,
        )

    return run


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message, uncompressed (the body of a unary call)."""
    return b"\0" + struct.pack(">I", len(message)) + message


def h2load_grpc(
    target: str,
    method: str,
    message: bytes,
    outcomes: Callable[[], tuple[int, int]],
    headers: Callable[[], Sequence[str]] = tuple,
) -> Run:
    """``h2load`` replays the call ``method`` (``/pkg.Service/Method``; unary, or
    server streaming: a request completes with the stream's trailers) with the
    serialized ``message`` over h2c to ``target``. ``outcomes()`` returns the
    server's cumulative (OK, not OK) count of ``method``: every request h2load
    completed must have been answered OK. ``headers()`` gives each run's extra
    headers (``"name: value"``), e.g. a fresh bearer token."""
    binary = ensure_tool("h2load", "nghttp2-client")
    body = _scratch_file(f"grpc-{method.replace('/', '_')}", grpc_frame(message))
    log = body.parent / "h2load.log"

    def run(concurrency: int, seconds: float) -> Load:
        log.unlink(missing_ok=True)  # h2load appends to an existing log
        ok_before, bad_before = outcomes()
        out, cpu = _run_child(
            [
                binary,
                f"-c{concurrency}",
                "-m1",
                "-t1",
                f"-D{max(1, round(seconds))}",
                "-d",
                str(body),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                *(arg for header in headers() for arg in ("-H", header)),
                f"--log-file={log}",
                f"http://{target}{method}",
            ]
        )
        ok_after, bad_after = outcomes()
        done = elapsed = failed = 0
        for line in out.splitlines():
            words = line.replace(",", "").split()
            if line.startswith("finished in"):
                elapsed = float(words[2].rstrip("s"))
            elif line.startswith("requests:"):
                done = int(words[5])
                failed = int(words[9]) + int(words[11]) + int(words[13])
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
        not_200 = sum(1 for row in rows if row[1] != "200")
        latencies = sorted(int(row[2]) for row in rows)
        server_bad = bad_after - bad_before
        unanswered = max(0, done - (ok_after - ok_before))
        # The three count the same calls when the server answers an error status.
        failures = failed + max(not_200, server_bad, unanswered)
        first = ""
        if failures:
            first = (
                f"h2load failed {failed}, HTTP status not 200 {not_200}; server counted "
                f"{server_bad} non-OK and {unanswered} fewer OK than completed"
            )
        return Load(
            requests=done,
            seconds=elapsed,
            p50_ms=percentile(latencies, 50) / 1e3,
            p99_ms=percentile(latencies, 99) / 1e3,
            failures=failures,
            first_failure=first,
            client_cpu=cpu,
        )

    return run


#: py-spy, on PATH or next to this Python (``pip install py-spy``).
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def profiled(
    pid: int, run: Run, seconds: int, spy: str, flags: Sequence[str] = (), prefix: str = "profile-"
) -> tuple[Path, Load]:
    """py-spy samples process ``pid`` at 250 Hz (raw folded stacks, ``record -f raw``:
    no browser needed) for ``seconds`` while ``run`` drives it at c=32. Returns where the
    stacks are and the load's result."""
    out = Path(tempfile.mkdtemp(prefix=prefix)) / "raw.txt"
    recorder = subprocess.Popen(  # noqa: S603 - our own profiler, fixed arguments
        [spy, "record", "-f", "raw", "-r", "250", *flags, "-o", str(out)]
        + ["--pid", str(pid), "--duration", str(seconds)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    result: dict[str, Load] = {}
    worker = threading.Thread(target=lambda: result.update(load=run(32, seconds)))
    worker.start()
    recorder.wait()
    worker.join()
    return out, result["load"]


def raw_stacks(path: Path) -> Iterator[tuple[list[str], int]]:
    """The samples of a py-spy ``record -f raw`` file: (frames outermost first, count)."""
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            yield stack.split(";"), int(count)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(len(sorted_values) * p / 100))
    return float(sorted_values[rank - 1])


# -- alternating rounds ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    run: Run
    server: Callable[[], CpuSample]
    database: Callable[[], CpuSample] | None = None
    concurrencies: tuple[int, ...] = (1, 32)


@dataclass
class Result:
    """A target's rounds at one concurrency."""

    target: Target
    concurrency: int
    loads: list[Load] = field(default_factory=list)
    server_cpu: float = 0.0
    database_cpu: float = 0.0

    @property
    def qps(self) -> float:
        return statistics.median(load.qps for load in self.loads)

    @property
    def spread(self) -> tuple[float, float]:
        return min(x.qps for x in self.loads), max(x.qps for x in self.loads)

    @property
    def p50_ms(self) -> float:
        return statistics.median(load.p50_ms for load in self.loads)

    @property
    def p99_ms(self) -> float:
        return statistics.median(load.p99_ms for load in self.loads)

    @property
    def requests(self) -> int:
        return sum(load.requests for load in self.loads)

    @property
    def seconds(self) -> float:
        return sum(load.seconds for load in self.loads)

    @property
    def failures(self) -> int:
        return sum(load.failures for load in self.loads)

    @property
    def server_ms_per_call(self) -> float:
        return 1e3 * self.server_cpu / self.requests

    @property
    def database_ms_per_call(self) -> float:
        return 1e3 * self.database_cpu / self.requests

    @property
    def per_core(self) -> float:
        """Requests per second of server CPU."""
        return self.requests / self.server_cpu

    @property
    def per_core_with_database(self) -> float:
        return self.requests / (self.server_cpu + self.database_cpu)


def alternate(
    targets: Sequence[Target],
    concurrencies: Sequence[int],
    rounds: int,
    seconds: float,
    warmup: float = 2.0,
) -> tuple[dict[tuple[str, int], Result], float]:
    """Runs every target ``rounds`` times at each concurrency, in turn, after a
    discarded warm-up run of each; prints one line per round. Returns the results
    and the cores that other work on the machine used meanwhile."""
    at_rest(targets)
    for t in targets:
        t.run(max(t.concurrencies), warmup)
    results: dict[tuple[str, int], Result] = {}
    machine, own, start = _machine(), resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for c in concurrencies:
        for r in range(rounds):
            line = []
            for t in targets:
                if c not in t.concurrencies:
                    continue
                result = results.setdefault((t.name, c), Result(t, c))
                server, database = t.server(), t.database() if t.database else {}
                load = t.run(c, seconds)
                result.server_cpu += used(server, t.server())
                if t.database:
                    result.database_cpu += used(database, t.database())
                result.loads.append(load)
                bad = f" {load.failures} FAILED" if load.failures else ""
                line.append(f"{t.name} {load.qps:.0f}{bad}")
            print(f"  c={c} round {r + 1}/{rounds}: " + " | ".join(line), flush=True)
            time.sleep(0.2)  # let closing connections settle between rounds
    elapsed = time.monotonic() - start
    busy, steal = (b - a for a, b in zip(machine, _machine(), strict=True))
    after = resource.getrusage(resource.RUSAGE_SELF)
    ours = sum(
        r.server_cpu + r.database_cpu + sum(x.client_cpu for x in r.loads) for r in results.values()
    )
    ours += (after.ru_utime - own.ru_utime) + (after.ru_stime - own.ru_stime)
    print(
        f"during the rounds ({elapsed:.0f}s): the machine was busy {busy / elapsed:.2f} cores, "
        f"this benchmark {ours / elapsed:.2f}, other work {(busy - ours) / elapsed:.2f}; "
        f"hypervisor steal {steal / elapsed:.2f} cores"
    )
    elsewhere = (busy - ours) / elapsed
    if contended(elsewhere):
        print(
            "  other work took CPU the servers could have used: their QPS and latency are "
            "bound by it; CPU per call (srv ms/call, calls/CPU-s) holds up better"
        )
    return results, elsewhere


def contended(elsewhere: float) -> bool:
    """Whether other work used enough CPU to bound the servers' wall-time figures."""
    return elsewhere > BUSY_ELSEWHERE


def verdict(value: float, goal: float, at_least: bool, elsewhere: float | None = None) -> str:
    """``met`` or ``MISSED``; a wall-time figure (given ``elsewhere``) measured while
    other work was busy is not judged."""
    if elsewhere is not None and contended(elsewhere):
        return f"not judged: other work used {elsewhere:.2f} cores"
    return "met" if (value >= goal if at_least else value <= goal) else "MISSED"


def _machine() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def at_rest(targets: Sequence[Target], seconds: float = 2.0) -> None:
    """Prints the cores each server (and its database backends) uses with no load:
    background work that the rounds' CPU figures include."""
    servers: dict[frozenset[int], Target] = {}
    for t in targets:
        servers.setdefault(frozenset(t.server()), t)
    before = [(t.server(), t.database() if t.database else {}) for t in servers.values()]
    time.sleep(seconds)
    parts = []
    for t, (server, database) in zip(servers.values(), before, strict=True):
        pg = f" + PG {used(database, t.database()) / seconds:.3f}" if t.database else ""
        parts.append(f"{t.name.split()[0]} {used(server, t.server()) / seconds:.3f}{pg}")
    print(f"cores used at rest ({seconds:.0f}s, no load): " + "; ".join(parts))


def print_table(results: dict[tuple[str, int], Result]) -> None:
    """One row per target and concurrency: median QPS of the rounds (min-max), median
    p50/p99, cores the server used, its CPU per call and calls per CPU-second, the
    database backends' CPU per call, and cores the load generator used."""
    print(
        f"{'target':<30} {'c':>3} {'QPS':>6} {'(min-max)':>11} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'srv cores':>9} {'srv ms/call':>11} {'calls/CPU-s':>11} {'PG ms/call':>10}"
        f" {'gen cores':>9} {'errors':>6}"
    )
    for (name, c), r in results.items():
        lo, hi = r.spread
        pg = f"{r.database_ms_per_call:10.3f}" if r.target.database else f"{'-':>10}"
        gen = sum(x.client_cpu for x in r.loads) / r.seconds
        print(
            f"{name:<30} {c:>3} {r.qps:>6.0f} {f'({lo:.0f}-{hi:.0f})':>11} {r.p50_ms:>7.2f}"
            f" {r.p99_ms:>7.2f} {r.server_cpu / r.seconds:>9.2f} {r.server_ms_per_call:>11.3f}"
            f" {r.per_core:>11.0f} {pg} {gen:>9.2f} {r.failures:>6}"
        )
    for (name, c), r in results.items():
        for load in r.loads:
            if load.failures:
                print(f"  {name} c={c}: {load.failures} failures, first: {load.first_failure}")
                break
