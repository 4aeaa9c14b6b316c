"""The real `threshold` command and `make`, run from tests as a newcomer would run them."""

from __future__ import annotations

import fcntl
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# What the test run (pytest's settings, make's own variables) must not hand to a child process.
_NOT_A_NEWCOMERS = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")


def newcomer_environment(**extra: str) -> dict[str, str]:
    """This environment without any THRESHOLD_* setting or the test run's, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("THRESHOLD_") and key not in _NOT_A_NEWCOMERS
    }
    env.update(extra)
    return env


def threshold_command() -> list[str]:
    """The installed `threshold` script, or the module when there is none."""
    script = Path(sys.prefix) / "bin" / "threshold"
    return [str(script)] if script.exists() else [sys.executable, "-m", "threshold.cli.main"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


DATABASE_FILE = "threshold.sqlite3"  # in THRESHOLD_VAR_DIR, without a DATABASE_URL
# The test run's own directory, which tests/env.py makes: what is made once per run goes there.
RUN_DIR = "THRESHOLD_TEST_RUN_DIR"


def migrated(var: Path) -> None:
    """``var`` as `threshold migrate` leaves a new var directory on SQLite: owner-only, with a
    copy of the database the real command made once for the whole test run (``_migrated``),
    rather than migrating again for every server a test starts (about 7 s of CPU each)."""
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(_migrated(), var / DATABASE_FILE)


@functools.cache
def _migrated() -> Path:
    """The SQLite database `threshold migrate` made in a var directory of its own, in the test
    run's directory (tests/env.py), made by whichever process of the run asks first."""
    run_dir = Path(os.environ[RUN_DIR])
    run_dir.mkdir(parents=True, exist_ok=True)
    made = run_dir / "migrated"
    with (run_dir / "migrated.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            scratch = Path(tempfile.mkdtemp(prefix="migrating-", dir=run_dir))
            env = newcomer_environment(
                THRESHOLD_VAR_DIR=str(scratch), THRESHOLD_SECRET_KEY=secrets.token_urlsafe(48)
            )
            done = subprocess.run(
                [*threshold_command(), "migrate", "--noinput"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert done.returncode == 0, f"threshold migrate failed:\n{done.stdout}{done.stderr}"
            scratch.rename(made)
    return made / DATABASE_FILE


def one_worker(var: Path) -> tuple[int, dict[str, str]]:
    """A free port and the environment of a migrated server with one worker on it, its
    ``THRESHOLD_VAR_DIR`` ``var``: what the serving tests start (``serving``)."""
    port = free_port()
    env = newcomer_environment(
        THRESHOLD_VAR_DIR=str(var),
        THRESHOLD_SECRET_KEY=secrets.token_urlsafe(48),
        THRESHOLD_HOST="127.0.0.1",
        THRESHOLD_PORT=str(port),
        THRESHOLD_ORIGINS=f"http://localhost:{port}",
        THRESHOLD_WORKERS="1",
        THRESHOLD_EMAIL_BACKEND="file",
    )
    migrated(var)
    return port, env


@contextmanager
def serving(
    env: dict[str, str], log: Path, is_up: Callable[[], bool]
) -> Iterator[subprocess.Popen[bytes]]:
    """`threshold serve` with ``env`` (migrated already), its output in ``log``, until the
    block ends: started in its own process group, waited for until ``is_up()`` (which may
    raise OSError while it is not), stopped with SIGTERM."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*threshold_command(), "serve"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if is_up():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.1)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
