"""Complete discoverable passkey sign-ins against the real production server.

    .venv/bin/python bench/signin.py [--clients 32] [--duration 20] [--users 200]
                                     [--workers 2] [--database-url URL]

Starts ``threshold serve`` (gunicorn, sync workers) on a free port with a
temporary var directory, enrolls ``--users`` people with one passkey each
through the real invite-link HTTP flow, then runs ``--clients`` concurrent
clients (asyncio + aiohttp, one cookie jar each) that sign in over and over
with a software authenticator that signs real ECDSA assertions:

    POST /sign-in/options {}  ->  sign  ->  POST /sign-in/result  ->  status "ok"

It reports sign-ins per second, latency percentiles, and the server's CPU
milliseconds per sign-in (utime + stime of the gunicorn master and workers from
/proc), which a noisy machine disturbs less than throughput. See bench/README.md.

Only talks to 127.0.0.1; stops by itself; removes the server and its temporary
directory on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.authenticator import SoftAuthenticator  # noqa: E402
from threshold.core.encoding import b64url_encode  # noqa: E402

RESULTS = REPO / "bench" / "results"
CSRF_COOKIE = "threshold_csrf"
SESSION_COOKIE = "threshold_session"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_ERRORS_SHOWN = 5
PINNED_CORES = 2  # one for the server, one for the load generator
# What the command line accepts: --duration and --warmup (seconds), --servers.
MAX_DURATION, MAX_WARMUP, MAX_SERVERS = 3600, 600, 4


# --- The server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_plan() -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load-generator cores): core 0 and core 1 when there are two."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(available) < PINNED_CORES:
        return None, None
    return {available[0]}, {available[1]}


class Server:
    """``threshold serve`` in its own process group, with its own var directory.

    With ``--servers 2`` the first one is the primary and holds the others (``peers``):
    they share its public origin, its secret key and its database (on SQLite, its var
    directory), as servers behind a load balancer do.
    """

    def __init__(
        self, args: argparse.Namespace, cores: set[int] | None, primary: Server | None = None
    ) -> None:
        self.port = free_port()
        self.origin = primary.origin if primary else f"http://localhost:{self.port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="threshold-bench-"))
        self.log_path = self.tmp / "server.log"
        self.cores = cores
        self.proc: subprocess.Popen[bytes] | None = None
        self.peers: list[Server] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith("THRESHOLD_")}
        env.pop("DATABASE_URL", None)
        var_dir = self.tmp / "var"
        if primary is not None and not args.database_url:
            var_dir = Path(primary.env["THRESHOLD_VAR_DIR"])  # the one SQLite file
        env.update(
            THRESHOLD_VAR_DIR=str(var_dir),
            THRESHOLD_HOST="127.0.0.1",
            THRESHOLD_PORT=str(self.port),
            THRESHOLD_ORIGINS=self.origin,
            THRESHOLD_WORKERS=str(args.workers),
            THRESHOLD_EMAIL_BACKEND="file",
            THRESHOLD_SECRET_KEY=(
                primary.env["THRESHOLD_SECRET_KEY"] if primary else secrets.token_urlsafe(48)
            ),
            PYTHONUNBUFFERED="1",
        )
        if args.database_url:
            env["DATABASE_URL"] = args.database_url
        self.env = env

    @property
    def bases(self) -> list[str]:
        """Where requests go, round robin: this server, then its peers."""
        return [self.base] + [peer.base for peer in self.peers]

    def manage(self, *argv: str, timeout: float = 300) -> str:
        """Run a ``threshold`` command to completion; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "threshold.cli.main", *argv],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"bench: `threshold {argv[0]}` failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            )
        return done.stdout

    def start(self) -> None:
        cores = self.cores

        def pin() -> None:
            if cores:
                os.sched_setaffinity(0, cores)

        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "threshold.cli.main", "serve"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C is ours to handle; the group is ours to stop
            # Before exec, so that every worker gunicorn forks inherits the cores; the bench
            # starts its servers before any thread of its own.
            preexec_fn=pin,  # noqa: PLW1509
        )
        log.close()
        for peer in getattr(self, "peers", []):
            peer.start()

    async def wait_ready(self, timeout: float = 30) -> None:
        for target in [self, *getattr(self, "peers", [])]:
            await target.wait_one_ready(timeout)

    async def wait_one_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise SystemExit(f"bench: the server exited:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(f"{self.base}/sign-in") as response:
                        if response.status == HTTPStatus.OK:
                            return
                await asyncio.sleep(0.1)
        raise SystemExit(f"bench: the server did not answer in {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the gunicorn masters and their workers."""
        user = system = 0.0
        for target in [self, *getattr(self, "peers", [])]:
            if target.proc is not None:
                u, s = family_cpu(target.proc.pid)
                user, system = user + u, system + s
        return user, system

    def stop(self) -> None:
        for peer in getattr(self, "peers", []):
            peer.stop()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


class FloorServer:
    """``bench/floor.py`` under gunicorn: the cryptography alone, for the ratio (``--floor``)."""

    def __init__(self, args: argparse.Namespace, cores: set[int] | None) -> None:
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="threshold-floor-"))
        self.log_path = self.tmp / "server.log"
        self.cores = cores
        self.workers = args.workers
        self.proc: subprocess.Popen[bytes] | None = None

    def enroll(self, n: int) -> list[SoftAuthenticator]:
        """n software authenticators with one ES256 credential each, known to the floor."""
        keys: dict[str, str] = {}
        authenticators = []
        for i in range(n):
            authenticator = SoftAuthenticator()
            authenticator.create(
                {
                    "rp": {"id": "localhost", "name": "Floor"},
                    "user": {"id": b64url_encode(os.urandom(16)), "name": f"floor{i}"},
                    "challenge": b64url_encode(os.urandom(16)),
                    "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
                },
                self.origin,
            )
            credential = authenticator.credentials[0]
            point = credential.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            keys[b64url_encode(credential.credential_id)] = b64url_encode(point)
            authenticators.append(authenticator)
        (self.tmp / "keys.json").write_text(json.dumps(keys))
        return authenticators

    def start(self) -> None:
        cores = self.cores

        def pin() -> None:
            if cores:
                os.sched_setaffinity(0, cores)

        env = dict(
            os.environ,
            THRESHOLD_FLOOR_KEYS=str(self.tmp / "keys.json"),
            THRESHOLD_FLOOR_ORIGIN=self.origin,
            PYTHONUNBUFFERED="1",
        )
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the server
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "floor.py"),
                f"127.0.0.1:{self.port}",
                str(self.workers),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pin,  # noqa: PLW1509 - as in Server.start
        )
        log.close()

    wait_ready = Server.wait_ready
    wait_one_ready = Server.wait_one_ready
    log_tail = Server.log_tail
    cpu_seconds = Server.cpu_seconds
    stop = Server.stop


Target = Server | FloorServer


def _read_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after ``pid (comm)``)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def family(root: int) -> list[int]:
    """``root`` and all its descendants."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                parents[int(entry)] = int(stat[1])
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    return sorted(members)


def worker_rss_mb(root: int) -> list[float]:
    """Resident memory (VmRSS) of each worker of the gunicorn master ``root``, in MB."""
    sizes = []
    for pid in family(root):
        if pid == root:
            continue
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


def family_cpu(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``root`` and its descendants, from /proc/<pid>/stat.

    utime + cutime and stime + cstime: a child that exited and was reaped (a
    gunicorn worker replaced after max_requests, a PostgreSQL backend that
    disconnected) still counts, through its parent.
    """
    user = system = 0
    for pid in family(root):
        stat = _read_stat(pid)
        if stat is not None:
            # Fields 14-17 of /proc/<pid>/stat: utime stime cutime cstime; stat[0] is field 3.
            utime, stime, cutime, cstime = (int(v) for v in stat[11:15])
            user += utime + cutime
            system += stime + cstime
    return user / CLK_TCK, system / CLK_TCK


def postgres_postmaster(database_url: str) -> tuple[int | None, str]:
    """The local PostgreSQL server's postmaster pid, to count its CPU; or None and why not."""
    try:
        import psycopg  # noqa: PLC0415 - only a run on PostgreSQL needs it
    except ImportError:
        return None, "psycopg is not installed"
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        if row is None:
            raise LookupError("no data_directory")
        pid = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
    except Exception as exc:  # noqa: BLE001 - remote server, no permission, ...: just say so
        return None, f"cannot find the server's processes ({type(exc).__name__}: {exc})"[:200]
    if _read_stat(pid) is None:
        return None, "the server is not on this machine"
    return pid, ""


def core_times(cores: set[int] | None) -> tuple[float, float, float]:
    """(busy, steal, total) seconds of ``cores`` (all CPUs when None), from /proc/stat."""
    busy = steal = total = 0
    with open("/proc/stat") as handle:
        for line in handle:
            name, *values = line.split()
            if not name.startswith("cpu"):
                break
            if (cores is None and name != "cpu") or (
                cores is not None and (name == "cpu" or int(name[3:]) not in cores)
            ):
                continue
            # user nice system idle iowait irq softirq steal ...
            ticks = [int(v) for v in values[:8]]
            total += sum(ticks)
            busy += sum(ticks) - ticks[3] - ticks[4] - ticks[7]
            steal += ticks[7]
    return busy / CLK_TCK, steal / CLK_TCK, total / CLK_TCK


def reference_loop_ms(cores: set[int] | None, repeat: int = 5) -> float:
    """CPU milliseconds of a fixed pure-Python loop on ``cores``: this machine's speed now.

    Shared machines change speed with their neighbours' load (caches, memory
    bandwidth, the hypervisor) even when nothing else runs on the same core;
    CPU per sign-in moves with it. Compare runs by this number too.
    """
    mine = os.sched_getaffinity(0) if cores else None
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        best = float("inf")
        for _ in range(repeat):
            start = time.process_time()
            table: dict[int, int] = {}
            for i in range(100_000):
                table[i % 1000] = table.get(i % 1000, 0) + len(str(i))
            best = min(best, time.process_time() - start)
    finally:
        if mine:
            os.sched_setaffinity(0, mine)
    return round(best * 1000, 2)


# --- Seeding: invites, then enrollment over HTTP -----------------------------------------

INVITE_SCRIPT = """
from threshold.audit.actions import Origin
from threshold.enrollment.actions import do_invite
for i in range({n}):
    created = do_invite("{prefix}-%d@example.com" % i, Origin.cli(), full_name="Bench %d" % i,
                        send_email=False)
    print("LINK", created.link)
"""


SEED_SCRIPT = """
import os, time, uuid
from django.db import connection, transaction
from threshold.accounts.models import User
from threshold.passkeys.models import Passkey
total, batch, started = {n}, 10000, time.perf_counter()
aaguid = uuid.UUID("08987058-cadc-4b81-b6e1-30de50dcbe96")
for first in range(0, total, batch):
    count = min(batch, total - first)
    with transaction.atomic():
        users = User.objects.bulk_create(
            User(
                username="seed-%d@example.com" % (first + i),
                email="seed-%d@example.com" % (first + i),
                full_name="Seed %d" % (first + i),
                password="!",
                user_handle=os.urandom(32),
            )
            for i in range(count)
        )
        Passkey.objects.bulk_create(
            Passkey(
                user_id=user.pk,
                credential_id=os.urandom(32),
                public_key=os.urandom(77),
                alg=-7,
                aaguid=aaguid,
                transports=["internal", "hybrid"],
                backup_eligible=True,
                backup_state=True,
                uv_initialized=True,
                attestation_format="none",
                attestation_type="none",
                authenticator_name="Windows Hello",
                authenticator_attachment="platform",
                is_discoverable=True,
            )
            for user in users
        )
with connection.cursor() as cursor:
    if connection.vendor == "sqlite":
        cursor.execute("ANALYZE")
    else:
        cursor.execute("ANALYZE accounts_user")
        cursor.execute("ANALYZE passkeys_passkey")
print("SEEDED", total, round(time.perf_counter() - started, 1))
"""


def seed_passkeys(server: Server, n: int) -> float:
    """n more people with one passkey each, in bulk (they exist; nobody signs in with them)."""
    out = server.manage("shell", "-c", SEED_SCRIPT.format(n=n), timeout=3600)
    found = re.search(r"^SEEDED (\d+) ([\d.]+)$", out, re.MULTILINE)
    if not found:
        raise SystemExit(f"bench: seeding failed:\n{out[-2000:]}")
    return float(found.group(2))


def create_invites(server: Server, n: int) -> list[str]:
    prefix = f"bench{int(time.time())}-user"
    out = server.manage("shell", "-c", INVITE_SCRIPT.format(n=n, prefix=prefix))
    links = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("LINK ")]
    if len(links) != n:
        raise SystemExit(f"bench: expected {n} invite links, got {len(links)}:\n{out[-2000:]}")
    return links


def new_client(server: Target, **kwargs: Any) -> aiohttp.ClientSession:
    # unsafe=True: keep cookies set by an IP-address host (we connect to 127.0.0.1).
    return aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=30),
        headers={"Origin": server.origin, "Accept": "application/json"},
        **kwargs,
    )


def csrf_token(session: aiohttp.ClientSession) -> str:
    for cookie in session.cookie_jar:
        if cookie.key == CSRF_COOKIE:
            return cookie.value
    return ""


async def post_json(
    session: aiohttp.ClientSession, url: str, payload: Any, flow: str | None = None
) -> tuple[int, dict[str, Any] | None, str]:
    headers = {"Content-Type": "application/json", "X-CSRFToken": csrf_token(session)}
    if flow is not None:
        headers["X-Threshold-Flow"] = flow  # the page's token (threshold/sessions/flow.py)
    async with session.post(
        url, data=json.dumps(payload, separators=(",", ":")), headers=headers
    ) as response:
        text = await response.text()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return response.status, data if isinstance(data, dict) else None, text


async def enroll_one(server: Server, link: str) -> SoftAuthenticator:
    token = link.rsplit("/", 1)[1]
    page = f"{server.base}/enroll/{token}"
    async with new_client(server) as session:
        async with session.get(page, headers={"Accept": "text/html"}) as response:
            html = await response.text()
            if response.status != HTTPStatus.OK:
                raise RuntimeError(f"GET /enroll: {response.status}")
        found = re.search(r'data-flow="([^"]*)"', html)
        flow = found.group(1) if found else ""
        status, data, text = await post_json(session, f"{page}/options", {}, flow)
        if status != HTTPStatus.OK or not data or data.get("status") != "ok":
            raise RuntimeError(f"enroll options: {status} {text[:300]}")
        authenticator = SoftAuthenticator()
        credential = authenticator.create(data["publicKey"], server.origin)
        status, data, text = await post_json(session, f"{page}/result", credential)
        if status != HTTPStatus.OK or not data or data.get("status") != "ok":
            raise RuntimeError(f"enroll result: {status} {text[:300]}")
    return authenticator


async def enroll_all(
    server: Server, links: list[str], concurrency: int = 8
) -> list[SoftAuthenticator]:
    gate = asyncio.Semaphore(concurrency)

    async def one(link: str) -> SoftAuthenticator:
        async with gate:
            return await enroll_one(server, link)

    return list(await asyncio.gather(*(one(link) for link in links)))


# --- Load -------------------------------------------------------------------------------


@dataclass
class Stats:
    signins: int = 0
    failures: int = 0
    total_ms: list[float] = field(default_factory=list)
    options_ms: list[float] = field(default_factory=list)
    result_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failure_kinds: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str, message: str) -> None:
        self.failures += 1
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1
        if len(self.errors) < MAX_ERRORS_SHOWN:
            self.errors.append(f"{kind}: {message[:400]}")


@dataclass
class Window:
    """Which completed sign-ins count: those finished inside [start, end)."""

    start: float = float("inf")
    end: float = float("inf")
    stop: bool = False
    max_signins: int = 0
    measured: Stats = field(default_factory=Stats)
    warmup: Stats = field(default_factory=Stats)

    def stats_for(self, finished_at: float) -> Stats | None:
        if finished_at < self.start:
            return self.warmup
        if finished_at < self.end:
            return self.measured
        return None


async def client_loop(
    server: Target,
    authenticators: list[SoftAuthenticator],
    window: Window,
    keep_session: bool,
) -> None:
    """One browser: its own cookie jar, signing in with its own people in turn.

    Each person belongs to exactly one client, so a credential's signature
    counter only ever grows (no false clone alarms from concurrent use).
    """
    # With peers, a sign-in's two requests go to different servers, round robin.
    bases = getattr(server, "bases", [server.base])
    turn = 0
    async with new_client(server) as session:
        need_page = True
        flow = ""
        while not window.stop:
            if need_page:
                # The sign-in page sets the CSRF cookie, as for a browser.
                try:
                    session.cookie_jar.clear()
                    async with session.get(
                        f"{server.base}/sign-in", headers={"Accept": "text/html"}
                    ) as response:
                        page = await response.text()
                    found = re.search(r'data-flow="([^"]*)"', page)
                    flow = found.group(1) if found else ""
                    need_page = False
                except (aiohttp.ClientError, TimeoutError) as exc:
                    (window.stats_for(time.monotonic()) or window.warmup).fail("page", repr(exc))
                    await asyncio.sleep(0.1)
                    continue
            authenticator = authenticators[turn % len(authenticators)]
            options_url = f"{bases[turn % len(bases)]}/sign-in/options"
            result_url = f"{bases[(turn + 1) % len(bases)]}/sign-in/result"
            turn += 1
            t0 = time.perf_counter()
            kind, message = "", ""
            try:
                status, data, text = await post_json(session, options_url, {}, flow)
                t1 = time.perf_counter()
                if status != HTTPStatus.OK or not data or data.get("status") != "ok":
                    kind, message = "options", f"{status} {text}"
                else:
                    assertion = authenticator.get(data["publicKey"], server.origin)
                    t2 = time.perf_counter()
                    status, data, text = await post_json(session, result_url, assertion)
                    t3 = time.perf_counter()
                    if status != HTTPStatus.OK or not data or data.get("status") != "ok":
                        kind, message = "result", f"{status} {text}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                kind, message = "connection", repr(exc)
            except (LookupError, ValueError, TypeError) as exc:  # options the client cannot use
                kind, message = "options", repr(exc)
            stats = window.stats_for(time.monotonic())
            if kind:
                need_page = True  # start over like a browser reloading the page
                if stats is not None:
                    stats.fail(kind, message)
                continue
            if stats is not None:
                stats.signins += 1
                stats.total_ms.append((t3 - t0) * 1000)
                stats.options_ms.append((t1 - t0) * 1000)
                stats.result_ms.append((t3 - t2) * 1000)
                if stats is window.measured and stats.signins >= window.max_signins:
                    window.stop = True
            if not keep_session:
                # Signed out without a request: the next sign-in starts anonymous,
                # with the (rotated) CSRF cookie a browser would still hold.
                session.cookie_jar.clear(lambda morsel: morsel.key == SESSION_COOKIE)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.5) - 1))], 2)

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "mean": round(statistics.fmean(ordered), 2),
        "max": round(ordered[-1], 2),
    }


async def run_load(
    server: Target,
    authenticators: list[SoftAuthenticator],
    args: argparse.Namespace,
    database_pid: int | None,
) -> dict[str, Any]:
    window = Window(max_signins=args.max_signins)
    shares = [authenticators[i :: args.clients] for i in range(args.clients)]
    tasks = [
        asyncio.create_task(client_loop(server, share, window, args.keep_session))
        for share in shares
    ]

    def sample() -> dict[str, Any]:
        return {
            "server": server.cpu_seconds(),
            "database": family_cpu(database_pid) if database_pid else (0.0, 0.0),
            "client": time.process_time(),
            "core": core_times(server.cores),
            "wall": time.perf_counter(),
        }

    reference_before = reference_loop_ms(server.cores)

    def rss() -> list[float]:
        return worker_rss_mb(server.proc.pid) if server.proc is not None else []

    try:
        await asyncio.sleep(args.warmup)
        window.start = time.monotonic()
        rss_before = rss()
        before = sample()
        end = window.start + args.duration
        while time.monotonic() < end and not window.stop:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
        window.end = time.monotonic()
        after = sample()
        rss_after = rss()
        window.stop = True
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=40)
    finally:
        for task in tasks:
            task.cancel()
    reference_after = reference_loop_ms(server.cores)
    m = window.measured
    wall = after["wall"] - before["wall"]
    server_user, server_system = (
        b - a for a, b in zip(before["server"], after["server"], strict=True)
    )
    server_cpu = server_user + server_system
    database_cpu = sum(after["database"]) - sum(before["database"])
    client_cpu = after["client"] - before["client"]
    core_busy, core_steal, core_total = (
        b - a for a, b in zip(before["core"], after["core"], strict=True)
    )

    def per_signin(seconds: float) -> float | None:
        return round(seconds * 1000 / m.signins, 3) if m.signins else None

    def cores(seconds: float) -> float | None:
        return round(seconds / wall, 3) if wall else None

    return {
        "window_seconds": round(wall, 3),
        "signins": m.signins,
        "failures": m.failures,
        "failure_kinds": m.failure_kinds,
        "first_errors": m.errors,
        "warmup_signins": window.warmup.signins,
        "warmup_failures": window.warmup.failures,
        "warmup_errors": window.warmup.errors,
        "signins_per_second": round(m.signins / wall, 1) if wall else None,
        "server_cpu_seconds": round(server_cpu, 3),
        "server_cpu_ms_per_signin": per_signin(server_cpu),
        "server_user_ms_per_signin": per_signin(server_user),
        "server_system_ms_per_signin": per_signin(server_system),
        "server_cores_busy": cores(server_cpu),
        # PostgreSQL's own processes (None on SQLite, which runs inside the workers).
        "database_cpu_ms_per_signin": per_signin(database_cpu) if database_pid else None,
        # What else ran on the server's core(s) in the window, and what the hypervisor took:
        # a busy neighbour inflates CPU per sign-in too (shared caches, memory bandwidth).
        "server_core_other_busy": (
            round(max(0.0, core_busy - server_cpu) / core_total, 3) if core_total else None
        ),
        "server_core_steal": round(core_steal / core_total, 3) if core_total else None,
        "reference_loop_ms": min(reference_before, reference_after),
        "client_cpu_ms_per_signin": per_signin(client_cpu),
        # Each worker's resident memory after the warm-up and at the end of the window.
        "worker_rss_mb": {"after_warmup": rss_before, "after_window": rss_after},
        "client_cores_busy": cores(client_cpu),
        "latency_ms": {
            "signin": percentiles(m.total_ms),
            "options": percentiles(m.options_ms),
            "result": percentiles(m.result_ms),
        },
    }


async def load_page(session: aiohttp.ClientSession, server: Target) -> str:
    """GET /sign-in, as a browser: the CSRF cookie, and the page's flow token."""
    session.cookie_jar.clear()
    async with session.get(f"{server.base}/sign-in", headers={"Accept": "text/html"}) as response:
        page = await response.text()
    found = re.search(r'data-flow="([^"]*)"', page)
    return found.group(1) if found else ""


async def open_loop(
    server: Target, authenticators: list[SoftAuthenticator], rate: float, duration: float
) -> dict[str, Any]:
    """Sign-ins started at a fixed rate, whether or not earlier ones finished (an open loop):
    latency from each one's arrival, queueing included. Each sign-in borrows an idle browser
    (its own people, so counters never race); 32 browsers are more than half load needs."""
    browsers: asyncio.Queue[tuple[aiohttp.ClientSession, list[SoftAuthenticator], str]]
    browsers = asyncio.Queue()
    pool = min(32, len(authenticators))
    sessions = [new_client(server) for _ in range(pool)]
    for number, session in enumerate(sessions):
        browsers.put_nowait(
            (session, authenticators[number::pool], await load_page(session, server))
        )
    latencies: list[float] = []
    failures: list[str] = []
    turn = 0

    async def arrival(arrived: float) -> None:
        nonlocal turn
        session, people, flow = await browsers.get()
        turn += 1
        try:
            status, data, text = await post_json(
                session, f"{server.base}/sign-in/options", {}, flow
            )
            if status == HTTPStatus.OK and data and data.get("status") == "ok":
                assertion = people[turn % len(people)].get(data["publicKey"], server.origin)
                status, data, text = await post_json(
                    session, f"{server.base}/sign-in/result", assertion
                )
            if status == HTTPStatus.OK and data and data.get("status") == "ok":
                latencies.append((time.perf_counter() - arrived) * 1000)
                session.cookie_jar.clear(lambda morsel: morsel.key == SESSION_COOKIE)
            else:
                failures.append(f"{status} {text[:200]}")
                flow = await load_page(session, server)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            failures.append(repr(exc))
        finally:
            browsers.put_nowait((session, people, flow))

    tasks = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration:
        due = start + len(tasks) / rate
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(arrival(time.perf_counter())))
    await asyncio.gather(*tasks)
    for session in sessions:
        await session.close()
    return {
        "rate_per_second": round(rate, 1),
        "seconds": duration,
        "signins": len(latencies),
        "failures": len(failures),
        "first_errors": failures[:MAX_ERRORS_SHOWN],
        "latency_ms": percentiles(latencies),
    }


def memory_phase(
    server: Server, authenticators: list[SoftAuthenticator], args: argparse.Namespace, done: int
) -> dict[str, Any]:
    """Sign in until ``args.memory_signins`` sign-ins in all (``done`` so far), then read the
    workers' RSS again: memory that grows with sign-ins shows here."""
    remaining = max(0, args.memory_signins - done)
    if remaining:
        more = argparse.Namespace(**{**vars(args), "warmup": 0, "duration": MAX_DURATION})
        more.max_signins = remaining
        result = asyncio.run(run_load(server, authenticators, more, None))
        done += result["signins"] + result["warmup_signins"]
    return {"signins": done, "worker_rss_mb": worker_rss_mb(server.proc.pid) if server.proc else []}


# --- Report -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
    }


def git_commit() -> str:
    try:
        # Not a git checkout: no commit to name, and no failure either.
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "threshold"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except OSError:
        return ""


def print_report(result: dict[str, Any]) -> None:
    r, c = result["results"], result["config"]
    print()
    print(
        f"Threshold sign-in benchmark  {result['date']}  {c['database']}  "
        f"workers={c['workers']} clients={c['clients']} users={c['users']} "
        f"session={'kept' if c['keep_session'] else 'fresh'}"
    )
    print(f"  pinning: server on cores {c['server_cores']}, load generator on {c['client_cores']}")
    print(
        f"  window {r['window_seconds']} s (after {c['warmup']} s warm-up): "
        f"{r['signins']} sign-ins, {r['failures']} failures"
    )
    print(f"  sign-ins per second      {r['signins_per_second']}")
    print(
        f"  server CPU per sign-in   {r['server_cpu_ms_per_signin']} ms   "
        f"(user {r['server_user_ms_per_signin']}, system {r['server_system_ms_per_signin']}; "
        f"target < 2 ms on SQLite)"
    )
    if r["database_cpu_ms_per_signin"] is not None:
        total = r["server_cpu_ms_per_signin"] + r["database_cpu_ms_per_signin"]
        print(
            f"  PostgreSQL CPU per sign-in {r['database_cpu_ms_per_signin']} ms "
            f"(server + database {total:.3f} ms)"
        )
    print(
        f"  server core              {r['server_cores_busy']} busy with the server, "
        f"{r['server_core_other_busy']} with other processes, {r['server_core_steal']} stolen; "
        f"reference loop {r['reference_loop_ms']} ms"
    )
    print(
        f"  client CPU per sign-in   {r['client_cpu_ms_per_signin']} ms   "
        f"(load generator busy {r['client_cores_busy']} cores)"
    )
    memory = r.get("worker_rss_mb") or {}
    if memory.get("after_window"):
        print(
            f"  worker RSS MB            after warm-up {memory['after_warmup']}, "
            f"after the window {memory['after_window']}"
        )
    print("  latency ms               p50      p90      p99      max")
    for name, values in r["latency_ms"].items():
        label = {
            "signin": "complete sign-in",
            "options": "POST /sign-in/options",
            "result": "POST /sign-in/result",
        }[name]
        cells = "".join(
            f"{values[k] if values[k] is not None else '-':>9}"
            for k in ("p50", "p90", "p99", "max")
        )
        print(f"  {label:<23}{cells}")
    if r["failures"] or r["warmup_failures"]:
        print(f"  failures by kind: {r['failure_kinds']}  (warm-up: {r['warmup_failures']})")
        for line in r["first_errors"] or r["warmup_errors"]:
            print(f"    {line}")


# --- Main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds (default 20)")
    parser.add_argument(
        "--warmup", type=float, default=3, help="unmeasured seconds first (default 3)"
    )
    parser.add_argument("--users", type=int, default=200, help="people enrolled (default 200)")
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers, THRESHOLD_WORKERS (default 2)"
    )
    parser.add_argument(
        "--database-url", default="", help="PostgreSQL DATABASE_URL (default SQLite)"
    )
    parser.add_argument(
        "--max-signins",
        type=int,
        default=200_000,
        help="stop the measured window after this many sign-ins (default 200000)",
    )
    parser.add_argument(
        "--keep-session",
        action="store_true",
        help="sign in again from the signed-in session instead of a fresh anonymous one",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also serve bench/floor.py (the ES256 verify alone) and alternate with it",
    )
    parser.add_argument(
        "--rounds", type=int, default=0, help="measured rounds (default 1, or 3 with --floor)"
    )
    parser.add_argument(
        "--servers",
        type=int,
        default=1,
        help="threshold serve instances on one database; a sign-in's options and result "
        "go to different ones, round robin (scale-out; use PostgreSQL)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="first add this many people with one passkey each, in bulk (scale runs)",
    )
    parser.add_argument(
        "--half-load",
        type=float,
        default=0,
        metavar="S",
        help="then S seconds of sign-ins started at half the measured rate (open loop), "
        "for latency at half load",
    )
    parser.add_argument(
        "--memory-signins",
        type=int,
        default=0,
        metavar="N",
        help="then sign in until N sign-ins in all, and read the workers' RSS again",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load to cores")
    parser.add_argument("--output", type=Path, help="JSON result path (default bench/results/)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.users < 1 or args.workers < 1:
        parser.error("--clients, --users and --workers must be at least 1")
    if not 0 < args.duration <= MAX_DURATION or not 0 <= args.warmup <= MAX_WARMUP:
        parser.error(f"--duration must be in (0, {MAX_DURATION}] and --warmup in [0, {MAX_WARMUP}]")
    if not 1 <= args.servers <= MAX_SERVERS:
        parser.error(f"--servers must be 1 to {MAX_SERVERS}")
    if args.seed < 0:
        parser.error("--seed must not be negative")
    if args.rounds < 0:
        parser.error("--rounds must be at least 1")
    args.rounds = args.rounds or (3 if args.floor else 1)
    if args.users < args.clients:
        print(f"bench: --users raised to {args.clients}: every client needs its own people")
        args.users = args.clients
    return args


def print_comparison(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Threshold against the floor, round by round: CPU per sign-in and its ratio."""
    print()
    print("  Threshold vs the floor (server CPU per sign-in, alternated rounds on the same core)")
    print("  round   Threshold ms   floor ms   ratio   Threshold/s   floor/s   p50 / p99 ms")
    ratios = []
    for number, pair in enumerate(rounds, 1):
        ours, floor = pair["threshold"], pair["floor"]
        ratio = None
        if ours["server_cpu_ms_per_signin"] and floor["server_cpu_ms_per_signin"]:
            ratio = round(ours["server_cpu_ms_per_signin"] / floor["server_cpu_ms_per_signin"], 2)
            ratios.append(ratio)
        pair["ratio"] = ratio
        latency = ours["latency_ms"]["signin"]
        print(
            f"  {number:>5}   {ours['server_cpu_ms_per_signin']!s:>12}   "
            f"{floor['server_cpu_ms_per_signin']!s:>8}   {ratio!s:>5}   "
            f"{ours['signins_per_second']!s:>11}   {floor['signins_per_second']!s:>7}   "
            f"{latency['p50']} / {latency['p99']}"
        )
    summary: dict[str, Any] = {"ratios": ratios}
    if ratios:
        summary.update(
            median=round(statistics.median(ratios), 2), low=min(ratios), high=max(ratios)
        )
        print(
            f"  ratio to the floor: median {summary['median']}, "
            f"spread {summary['low']}-{summary['high']} over {len(ratios)} rounds"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server_cores, client_cores = (None, None) if args.no_pin else cpu_plan()
    server = Server(args, server_cores)
    server.peers = [Server(args, server_cores, primary=server) for _ in range(args.servers - 1)]
    floor = FloorServer(args, server_cores) if args.floor else None

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    rounds: list[dict[str, Any]] = []
    try:
        if client_cores:
            os.sched_setaffinity(0, client_cores)
        started = time.perf_counter()
        server.manage("migrate", "--noinput")
        if args.seed:
            print(f"bench: seeding {args.seed} people with a passkey each ...", flush=True)
            print(f"bench: seeded in {seed_passkeys(server, args.seed):.1f} s", flush=True)
        links = create_invites(server, args.users)
        server.start()
        asyncio.run(server.wait_ready())
        authenticators = asyncio.run(enroll_all(server, links))
        floor_authenticators: list[SoftAuthenticator] = []
        if floor is not None:
            floor_authenticators = floor.enroll(args.users)
            floor.start()
            asyncio.run(floor.wait_ready())
        print(
            f"bench: server on {server.origin} (pid {server.proc.pid if server.proc else '?'}), "
            f"{len(authenticators)} people enrolled in {time.perf_counter() - started:.1f} s; "
            f"measuring {args.rounds} round(s) of {args.duration:g} s after {args.warmup:g} s "
            f"warm-up{', alternated with the floor' if floor else ''}"
        )
        database_pid, database_note = (
            postgres_postmaster(args.database_url) if args.database_url else (None, "")
        )
        if database_note:
            print(f"bench: PostgreSQL's CPU is not counted: {database_note}")
        for number in range(args.rounds):
            pair: dict[str, Any] = {}
            # Alternate which goes first, so that neither always follows the other's warm-up.
            order = ["threshold", "floor"] if number % 2 == 0 else ["floor", "threshold"]
            for name in order:
                if name == "floor":
                    if floor is None:
                        continue
                    pair["floor"] = asyncio.run(run_load(floor, floor_authenticators, args, None))
                else:
                    pair["threshold"] = asyncio.run(
                        run_load(server, authenticators, args, database_pid)
                    )
                    pair["threshold"]["database_cpu_note"] = database_note
            rounds.append(pair)
            print(
                f"bench: round {number + 1}: Threshold "
                f"{pair['threshold']['server_cpu_ms_per_signin']} ms/sign-in"
                + (f", floor {pair['floor']['server_cpu_ms_per_signin']} ms" if floor else "")
            )
        half_load: dict[str, Any] | None = None
        if args.half_load:
            rate = statistics.median(
                pair["threshold"]["signins_per_second"] or 1.0 for pair in rounds
            )
            half_load = asyncio.run(open_loop(server, authenticators, rate / 2, args.half_load))
            print(
                f"bench: half load ({half_load['rate_per_second']}/s, open loop): p50 / p99 "
                f"{half_load['latency_ms']['p50']} / {half_load['latency_ms']['p99']} ms"
            )
        memory: dict[str, Any] | None = None
        if args.memory_signins:
            done = sum(
                pair["threshold"]["signins"] + pair["threshold"]["warmup_signins"]
                for pair in rounds
            ) + (half_load["signins"] if half_load else 0)
            memory = memory_phase(server, authenticators, args, done)
            print(
                f"bench: worker RSS after {memory['signins']} sign-ins: "
                f"{memory['worker_rss_mb']} MB"
            )
        for target in (server, floor):
            if target is not None and target.proc is not None and target.proc.poll() is not None:
                print(f"bench: a server died during the run:\n{target.log_tail()}")
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        server.stop()
        if floor is not None:
            floor.stop()

    now = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": git_commit(),
        "machine": machine(),
        "config": {
            "clients": args.clients,
            "duration": args.duration,
            "warmup": args.warmup,
            "users": args.users,
            "workers": args.workers,
            "rounds": args.rounds,
            "seeded_passkeys": args.seed,
            "servers": args.servers,
            "floor": args.floor,
            "half_load_seconds": args.half_load,
            "memory_signins": args.memory_signins,
            "database": args.database_url.partition(":")[0] if args.database_url else "sqlite",
            "keep_session": args.keep_session,
            "server_cores": sorted(server_cores) if server_cores else "any",
            "client_cores": sorted(client_cores) if client_cores else "any",
        },
        "results": rounds[-1]["threshold"],
        "rounds": rounds,
        "half_load": half_load,
        "memory": memory,
    }
    for pair in rounds:
        print_report({**result, "results": pair["threshold"]})
    if floor is not None:
        result["ratio_to_floor"] = print_comparison(rounds)
    output = args.output or RESULTS / f"signin-{now:%Y%m%d-%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"  result written to {output.relative_to(REPO) if output.is_relative_to(REPO) else output}"
    )
    failures = sum(
        pair[name]["failures"] for pair in rounds for name in ("threshold", "floor") if name in pair
    ) + (half_load["failures"] if half_load else 0)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
