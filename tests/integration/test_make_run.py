"""`make install` and `make run` as a newcomer meets them: the Makefile's own rules, run for real.

`make run` serves on a free port with its own var/ directory and SQLite database,
in the checkout's virtualenv (the one running these tests).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port, newcomer_environment

# Its servers and commands run on SQLite files of their own: the PostgreSQL run skips it.
pytestmark = pytest.mark.same_on_every_database

REPO = Path(__file__).resolve().parents[2]
RULE = "=" * 72


# --- make install --------------------------------------------------------------------------------

# Stands in for the virtualenv's python: prints what `pip install` prints when everything is
# there already (~220 lines), and fails like pip when asked to.
FAKE_PYTHON = """#!/bin/sh
i=0
while [ $i -lt 220 ]; do
    echo "Requirement already satisfied: package-$i in ./.venv/lib/python3.11/site-packages"
    i=$((i + 1))
done
if [ -n "$FAKE_PIP_FAILS" ]; then
    echo "ERROR: No matching distribution found for package-220" >&2
    exit 1
fi
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The Makefile and the files its install rule depends on, with a stand-in virtualenv."""
    # (Threshold Verify's pyproject.toml and scripts/system-deps joined them with issue 12.)
    for name in (
        "Makefile",
        "pyproject.toml",
        "constraints.txt",
        "verify/pyproject.toml",
        "scripts/system-deps",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def make_install(checkout: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "install"],
        cwd=checkout,
        env=newcomer_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_make_install_keeps_pip_quiet_and_its_output_in_a_log(checkout):
    done = make_install(checkout)
    assert done.returncode == 0, done.stdout + done.stderr
    output = (done.stdout + done.stderr).splitlines()
    assert output == [
        "Installing Threshold and its dependencies into .venv (log: .venv/pip-install.log)"
    ]
    log = (checkout / ".venv" / "pip-install.log").read_text()
    assert log.count("Requirement already satisfied") == 220
    assert (checkout / ".venv" / ".installed").exists()


def test_make_install_shows_pips_output_when_pip_fails(checkout):
    done = make_install(checkout, FAKE_PIP_FAILS="1")
    assert done.returncode != 0
    assert done.stderr.count("Requirement already satisfied") == 220
    assert "ERROR: No matching distribution found for package-220" in done.stderr
    assert "make: pip install failed: its output is above and in .venv/pip-install.log" in (
        done.stderr
    )
    # Not marked installed: the next `make` tries again.
    assert not (checkout / ".venv" / ".installed").exists()


# --- make run ------------------------------------------------------------------------------------


class Output:
    """The lines a running process writes (standard output and error together), as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._stream = process.stdout
        self._reader = threading.Thread(target=self._read, args=(self._stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, predicate, timeout: float) -> bool:
        """Collect lines until ``predicate(lines)`` holds; False when the time runs out first."""
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return predicate(self.lines)
            self.lines.append(line)
        return True

    def close(self) -> None:
        """Once the process has ended: the reader reaches the end of the pipe, then it is closed."""
        self._reader.join(timeout=10)
        self._stream.close()


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[tuple[Output, int]]:
    port = free_port()
    process = subprocess.Popen(
        ["make", "run"],
        cwd=REPO,
        env=newcomer_environment(
            THRESHOLD_VAR_DIR=str(tmp_path / "var"),
            THRESHOLD_PORT=str(port),
            THRESHOLD_WORKERS="2",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, the threshold command and gunicorn's workers
    )
    output = Output(process)
    try:
        yield output, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output.close()


def _framed_block_ended(lines: list[str]) -> bool:
    return lines.count(RULE) >= 2


def test_make_run_prints_the_enrollment_link_last_framed_with_the_full_command(make_run, tmp_path):
    output, port = make_run
    assert output.until(_framed_block_ended, timeout=120), "\n".join(output.lines)
    # Nothing follows once the server is ready.
    shown = len(output.lines)
    assert not output.until(lambda lines: len(lines) > shown, timeout=2), output.lines[shown:]
    lines = output.lines
    text = "\n".join(lines)

    start = lines.index(RULE)
    assert lines[-1] == RULE, text
    assert lines.count(RULE) == 2, text
    frame = lines[start:]
    before = lines[:start]
    # After the server's start-up lines, both workers' included.
    assert any("Listening at: http://127.0.0.1:" in line for line in before), text
    assert sum("Booting worker with pid" in line for line in before) == 2, text
    assert frame[1] == f"Threshold is ready at http://localhost:{port}"

    [link] = [line.strip() for line in frame if "/enroll/" in line]
    assert re.fullmatch(rf"http://localhost:{port}/enroll/[A-Za-z0-9_-]{{43}}", link)
    [command] = [line.strip() for line in frame if line.strip().endswith(" bootstrap")]
    # With the settings the link is made of, as `make run` was given them.
    *settings, program, _ = shlex.split(command)
    assert settings == [f"THRESHOLD_VAR_DIR={tmp_path / 'var'}", f"THRESHOLD_PORT={port}"]
    path = Path(program)
    assert path.is_absolute()
    assert path == REPO / ".venv" / "bin" / "threshold"
    assert os.access(path, os.X_OK)

    # The metadata's skipped entries are debug output, not start-up noise.
    assert "unreadable root certificate" not in text
    assert "without a usable description" not in text
    assert "Requirement already satisfied" not in text

    # The server really is ready: the link opens the enrollment page.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{link.split(str(port))[1]}") as page:
        assert page.status == 200
