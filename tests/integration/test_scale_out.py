"""Two Threshold servers on one database: a ceremony begun on one finishes on the other.

Scale-out puts several ``threshold serve`` instances behind a load balancer that may send a
sign-in's two requests to different servers. They share the database and the secret key,
and nothing else: this starts two real servers (gunicorn, separate processes and var
directories on PostgreSQL; one SQLite file otherwise) and sends every request of an
enrollment and of a sign-in alternately to one and to the other, as a round-robin balancer
would, with the browser's one public origin.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.authenticator import SoftAuthenticator
from tests.support.processes import free_port, newcomer_environment, threshold_command

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Backend:
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [*threshold_command(), *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"threshold {args[0]} failed:\n{done.stderr[-3000:]}"
        return done.stdout


@dataclass
class Browser:
    """One browser behind a round-robin balancer: its cookies, the public origin's Host."""

    public_host: str
    backends: list[Backend]
    cookies: dict[str, str] = field(default_factory=dict)
    turn: int = 0
    used: list[int] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, str]:
        backend = self.backends[self.turn % len(self.backends)]
        self.turn += 1
        self.used.append(backend.port)
        connection = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=30)
        sent = {
            "Host": self.public_host,
            "Origin": f"http://{self.public_host}",
            "Accept": "application/json" if body is not None else "text/html",
            "User-Agent": "Mozilla/5.0 (threshold scale-out test)",
            **headers,
        }
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
            sent["X-CSRFToken"] = self.cookies.get("threshold_csrf", "")
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                cookie_value = rest.split(";", 1)[0]
                if "max-age=0" in value.lower() or "expires=thu, 01 jan 1970" in value.lower():
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = cookie_value
        connection.close()
        return response.status, text


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[str, list[Backend]]]:
    public_port = free_port()
    public_host = f"localhost:{public_port}"
    base = newcomer_environment()
    database_url = os.environ.get("DATABASE_URL", "")
    shared = {
        "THRESHOLD_SECRET_KEY": secrets.token_urlsafe(48),
        "THRESHOLD_HOST": "127.0.0.1",
        "THRESHOLD_RP_ID": "localhost",
        "THRESHOLD_ORIGINS": f"http://{public_host}",
        "THRESHOLD_WORKERS": "1",
        "THRESHOLD_EMAIL_BACKEND": "file",
        "PYTHONUNBUFFERED": "1",
    }
    backends = []
    for name in ("a", "b"):
        port = free_port()
        # PostgreSQL: each server its own var directory. SQLite: the one database file.
        var_dir = tmp_path / (name if database_url else "shared")
        env = {**base, **shared, "THRESHOLD_VAR_DIR": str(var_dir), "THRESHOLD_PORT": str(port)}
        if database_url:
            env["DATABASE_URL"] = database_url
        backends.append(Backend(port, env))
    backends[0].run("migrate", "--noinput")
    try:
        for backend in backends:
            log = open(tmp_path / f"server-{backend.port}.log", "wb")  # noqa: SIM115
            backend.proc = subprocess.Popen(
                [*threshold_command(), "serve"],
                cwd=REPO,
                env=backend.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
        for backend in backends:
            deadline = time.monotonic() + 60
            while True:
                assert backend.proc is not None
                assert backend.proc.poll() is None, "a server exited at start-up"
                try:
                    with socket.create_connection(("127.0.0.1", backend.port), timeout=1):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "a server did not start in 60 s"
                    time.sleep(0.1)
        yield public_host, backends
    finally:
        for backend in backends:
            if backend.proc is not None and backend.proc.poll() is None:
                os.killpg(backend.proc.pid, signal.SIGTERM)
                backend.proc.wait(timeout=20)


def _flow(page: str) -> str:
    found = re.search(r'data-flow="([^"]*)"', page)
    return found.group(1) if found else ""


def test_a_ceremony_begun_on_one_server_finishes_on_the_other(
    two_servers: tuple[str, list[Backend]],
) -> None:
    public_host, backends = two_servers
    link = backends[0].run("invite", "ada@example.com", "--name", "Ada", "--no-email")
    path = "/enroll/" + link.strip().splitlines()[-1].rsplit("/enroll/", 1)[1]
    browser = Browser(public_host, backends)
    authenticator = SoftAuthenticator()
    origin = f"http://{public_host}"

    # Enrollment: the page on A, the options on B, the result on A.
    status, page = browser.request("GET", path)
    assert status == 200
    status, text = browser.request(
        "POST", f"{path}/options", {}, **{"X-Threshold-Flow": _flow(page)}
    )
    assert status == 200, text
    credential = authenticator.create(json.loads(text)["publicKey"], origin)
    status, text = browser.request("POST", f"{path}/result", credential)
    assert status == 200, text
    assert json.loads(text)["status"] == "ok"

    # Sign-in from a fresh browser: the page on A, the options on B, the result on A.
    browser = Browser(public_host, backends)
    status, page = browser.request("GET", "/sign-in")
    assert status == 200
    status, text = browser.request(
        "POST", "/sign-in/options", {}, **{"X-Threshold-Flow": _flow(page)}
    )
    assert status == 200, text
    assertion = authenticator.get(json.loads(text)["publicKey"], origin)
    holding_the_ceremony = dict(browser.cookies)
    status, text = browser.request("POST", "/sign-in/result", assertion)
    result_port = browser.used[-1]
    assert status == 200, text
    assert json.loads(text)["status"] == "ok"
    assert len(set(browser.used)) == 2, "both servers took part"

    # The session written by one server is read by the other.
    status, page = browser.request("GET", "/")
    assert status == 200
    assert "Ada" in page

    # The same answer with the same ceremony token, now on the server that did not take it:
    # the used challenge is in the shared database, so the replay is refused.
    other = [backend for backend in backends if backend.port != result_port]
    replay = Browser(public_host, other, cookies=holding_the_ceremony)
    status, text = replay.request("POST", "/sign-in/result", assertion)
    assert json.loads(text)["status"] != "ok", text
    assert status == 400, text
    latest = backends[0].run("audit", "--limit", "1").splitlines()[-1]
    assert "sign_in.failed" in latest
    assert "challenge_missing" in latest
