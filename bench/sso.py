"""Complete OpenID Connect code flows for people already signed in, against the real server.

    .venv/bin/python bench/sso.py [--clients 8] [--rounds 5] [--duration 6] [--workers 2]
                                  [--database-url URL] [--public]

Starts ``threshold serve`` (gunicorn, gthread workers of one thread) on a free port with a
temporary var directory (``bench/signin.py``'s ``Server``), adds an app with ``threshold apps add
--json``, enrolls one person per client through the real invite flow and signs each in once with
a passkey. Then each client (asyncio + aiohttp, its own cookie jar) runs, over and over, the
flow an app makes for a person who is already signed in:

    GET /authorize (PKCE S256, state, nonce) -> 302 with the code
    POST /token (client_secret_post, the code_verifier) -> access, refresh and ID token
    GET /userinfo (Bearer)

and checks each answer. It reports flows per second, latency, and the server's CPU
milliseconds per flow (utime + stime of the gunicorn master and workers from /proc) for each
measured round, with their median and spread. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import json
import secrets
import statistics
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from signin import (
    RESULTS,
    Server,
    cpu_plan,
    create_invites,
    csrf_token,
    enroll_all,
    git_commit,
    machine,
    new_client,
    percentiles,
    post_json,
)

REDIRECT_URI = "http://127.0.0.1:9/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def sign_in(server: Server, session: aiohttp.ClientSession, authenticator: Any) -> None:
    async with session.get(f"{server.base}/sign-in", headers={"Accept": "text/html"}) as page:
        html = await page.text()
    flow = html.split('data-flow="', 1)[1].split('"', 1)[0]
    status, data, text = await post_json(session, f"{server.base}/sign-in/options", {}, flow)
    if status != HTTPStatus.OK or not data:
        raise SystemExit(f"bench: sign-in options: {status} {text[:300]}")
    assertion = authenticator.get(data["publicKey"], server.origin)
    status, data, text = await post_json(session, f"{server.base}/sign-in/result", assertion)
    if status != HTTPStatus.OK or not data or data.get("status") != "ok":
        raise SystemExit(f"bench: sign-in: {status} {text[:300]}")


async def one_flow(
    server: Server,
    session: aiohttp.ClientSession,
    app: dict[str, Any],
    plain: aiohttp.ClientSession,
) -> None:
    verifier, challenge = pkce()
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": app["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email groups",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    async with session.get(f"{server.base}/authorize?{query}", allow_redirects=False) as response:
        location = response.headers.get("Location", "")
        if response.status != HTTPStatus.FOUND or not location.startswith(REDIRECT_URI):
            raise RuntimeError(f"authorize: {response.status} {location[:200]}")
    params = parse_qs(urlsplit(location).query)
    if params.get("state") != [state] or "code" not in params:
        raise RuntimeError(f"authorize: {location[:200]}")
    form = {
        "grant_type": "authorization_code",
        "code": params["code"][0],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "client_id": app["client_id"],
    }
    if app["client_secret"]:
        form["client_secret"] = app["client_secret"]
    async with plain.post(f"{server.base}/token", data=form) as response:
        tokens = await response.json(content_type=None)
        if response.status != HTTPStatus.OK or "id_token" not in tokens:
            raise RuntimeError(f"token: {response.status} {str(tokens)[:200]}")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with plain.get(f"{server.base}/userinfo", headers=headers) as response:
        claims = await response.json(content_type=None)
        if response.status != HTTPStatus.OK or "sub" not in claims:
            raise RuntimeError(f"userinfo: {response.status} {str(claims)[:200]}")


async def client_loop(  # noqa: PLR0917 - the loop's whole state, as signin.py's
    server: Server,
    session: aiohttp.ClientSession,
    app: dict[str, Any],
    deadline: float,
    latencies: list[float],
    errors: list[str],
) -> int:
    flows = 0
    async with aiohttp.ClientSession() as plain:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                await one_flow(server, session, app, plain)
            except (RuntimeError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                errors.append(repr(exc)[:300])
                continue
            latencies.append((time.perf_counter() - start) * 1000)
            flows += 1
    return flows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cores, load_cores = cpu_plan()
    server = Server(args, server_cores)
    try:
        server.manage("migrate", "--noinput")
        add = ["apps", "add", "Bench", "--redirect-uri", REDIRECT_URI, "--json"]
        app = json.loads(server.manage(*add, *(["--public"] if args.public else [])))
        links = create_invites(server, args.clients)
        server.start()
        if load_cores:
            import os  # noqa: PLC0415

            os.sched_setaffinity(0, load_cores)
        await server.wait_ready()
        authenticators = await enroll_all(server, links)
        sessions = [new_client(server) for _ in authenticators]
        for session, authenticator in zip(sessions, authenticators, strict=True):
            await sign_in(server, session, authenticator)
            assert csrf_token(session)
        rounds = []
        errors: list[str] = []
        for number in range(args.warmup_rounds + args.rounds):
            latencies: list[float] = []
            cpu_before = sum(server.cpu_seconds())
            started = time.monotonic()
            deadline = started + args.duration
            counts = await asyncio.gather(
                *(
                    client_loop(server, session, app, deadline, latencies, errors)
                    for session in sessions
                )
            )
            elapsed = time.monotonic() - started
            cpu = sum(server.cpu_seconds()) - cpu_before
            flows = sum(counts)
            if number < args.warmup_rounds:
                continue
            rounds.append(
                {
                    "flows": flows,
                    "flows_per_second": round(flows / elapsed, 1),
                    "cpu_ms_per_flow": round(cpu * 1000 / flows, 2) if flows else None,
                    "latency_ms": percentiles(latencies),
                }
            )
        for session in sessions:
            await session.close()
    finally:
        server.stop()
    per_flow = [r["cpu_ms_per_flow"] for r in rounds if r["cpu_ms_per_flow"] is not None]
    return {
        "benchmark": "sso",
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        "database": "postgresql" if args.database_url else "sqlite",
        "clients": args.clients,
        "workers": args.workers,
        "public_client": args.public,
        "rounds": rounds,
        "cpu_ms_per_flow": {
            "median": round(statistics.median(per_flow), 2) if per_flow else None,
            "min": min(per_flow, default=None),
            "max": max(per_flow, default=None),
            "stdev": round(statistics.stdev(per_flow), 2) if len(per_flow) > 1 else None,
        },
        "errors": errors[:5],
        "error_count": len(errors),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup-rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per round")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--public", action="store_true", help="a public client (no secret)")
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or RESULTS / f"sso-{stamp}.json"
    output.write_text(json.dumps(result, indent=2))
    for number, row in enumerate(result["rounds"], 1):
        print(
            f"round {number}: {row['flows']} flows, {row['flows_per_second']}/s, "
            f"{row['cpu_ms_per_flow']} ms CPU per flow, p50 {row['latency_ms']['p50']} ms"
        )
    spread = result["cpu_ms_per_flow"]
    print(
        f"server CPU per flow ({result['database']}): median {spread['median']} ms "
        f"(min {spread['min']}, max {spread['max']}, stdev {spread['stdev']}); "
        f"{result['error_count']} errors. Written to {output}"
    )
    return 1 if result["error_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
