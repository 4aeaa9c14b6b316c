"""`threshold` commands run again and again against one server's environment (the browser tests'
people, policies and audit reads: some hundreds a run), each in a process of its own forked from
one that has imported Django and Threshold once for that environment, rather than in a new
interpreter each time (about 0.7 s of CPU and 1 s of waiting each).

Each command still runs as `threshold ARGS` does: ``threshold.cli.main.main`` in a process of its
own, with the server's environment and working directory, its output and exit status its own.
Only the imports, ``django.setup()``, the commands' parser and what commands load on first use
(the URLconf, the email validator's patterns: together about 0.15 s of each `threshold invite`)
are done once, before any database connection is opened (each command opens its own). When the
forking process cannot be used, the command runs as a new interpreter, as before.
"""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The forking process: reads one JSON request a line ({"args", "out", "err"}), forks, and answers
# one JSON line ({"status"}) once the command's process has exited.
_FORKING = r"""
import json, os, sys, traceback

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "threshold.settings")
import django

django.setup()
from django.core.validators import validate_email
from django.db import connections
from django.urls import reverse

from threshold.cli.main import default_cli, main

# Made once here rather than in every command's process: the parser of every command, the
# URLconf and every view module it imports (the links `invite` and `recover` print), and the
# email validator's patterns (compiled on first use: 70 ms).
default_cli()
reverse("selfservice:home")
validate_email("someone@example.com")
connections.close_all()
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            for fd, path in ((1, request["out"]), (2, request["err"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            try:
                status = main(request["args"])
            except SystemExit as exited:
                code = exited.code
                status = code if isinstance(code, int) else (0 if code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, waited = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(waited)}), flush=True)
"""


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


class Commands:
    """`threshold` commands with ``env`` in ``cwd``, forked from one loaded process."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        self._command, self._env, self._cwd = command, env, cwd
        self._scratch = Path(tempfile.mkdtemp(prefix="threshold-commands-"))
        self._forking: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-c", _FORKING],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def run(self, *args: str, timeout: float = 60) -> Done:
        forking = self._forking
        if forking is not None and forking.poll() is None:
            out, err = self._scratch / "out", self._scratch / "err"
            assert forking.stdin is not None
            assert forking.stdout is not None
            try:
                request = {"args": list(args), "out": str(out), "err": str(err)}
                forking.stdin.write(json.dumps(request) + "\n")
                forking.stdin.flush()
                ready, _, _ = select.select([forking.stdout], [], [], timeout)
                if not ready:
                    forking.kill()
                    raise AssertionError(f"threshold {' '.join(args)} took over {timeout} s")
                answer = forking.stdout.readline()
            except (BrokenPipeError, OSError):
                answer = ""
            if answer:
                status = int(json.loads(answer)["status"])
                return Done(status, out.read_text(), err.read_text())
            self.close()
        done = subprocess.run(
            [*self._command, *args],
            cwd=self._cwd,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        forking, self._forking = self._forking, None
        if forking is not None:
            if forking.stdin is not None:
                forking.stdin.close()
            try:
                forking.wait(timeout=10)
            except subprocess.TimeoutExpired:
                forking.kill()
                forking.wait(timeout=5)
            if forking.stdout is not None:
                forking.stdout.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
