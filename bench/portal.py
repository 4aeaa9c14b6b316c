"""The admin portal at scale: the people list and the audit log, 100,000 people, 1,000,000 events.

    scripts/with-postgres .venv/bin/python bench/portal.py
    .venv/bin/python bench/portal.py --database-url sqlite:////tmp/portal.sqlite3
    .venv/bin/python bench/portal.py --database-url postgres://... --people 100000 --events 1000000

Migrates the database it is given (an empty one: it adds its people and events), seeds it with
bulk SQL (``generate_series`` on PostgreSQL, a recursive count on SQLite: seconds, not the hours
the ORM would take; a third of the events are single sign-on's, naming a handful of apps), then
times the portal's pages through Django's full request stack in this process (middleware, session,
the view, the template; no network): each page is requested ``--repeat`` times after a warm-up, as
a signed-in auditor, and the median and 95th percentile are reported. The target is under 50 ms
each.
``--output`` writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 50.0

# A spread of actions like a real log's: mostly sign-ins, some failures with their reason codes, and
# a third single sign-on (each app's authorizations, token issues, refusals and logouts), whose
# detail names the app by client ID as threshold/sso/ writes it (``@app`` below).
ACTIONS = [
    ("sign_in.succeeded", "", "{}"),
    ("sign_in.succeeded", "", "{}"),
    ("sign_in.succeeded", "", "{}"),
    ("sign_in.succeeded", "", "{}"),
    ("sign_in.succeeded", "", "{}"),
    ("sign_in.succeeded", "", "{}"),
    ("step_up.succeeded", "", "{}"),
    ("sign_out", "", "{}"),
    ("sign_in.failed", "signature_invalid", "{}"),
    ("sign_in.failed", "credential_unknown", "{}"),
    ("sign_in.failed", "password_incorrect", "{}"),
    ("passkey.registered", "", "{}"),
    ("passkey.registration_failed", "already_registered", "{}"),
    ("invite.created", "", "{}"),
    ("user.locked", "", "{}"),
    ("policy.changed", "", "{}"),
    ("sso.authorized", "", '{"app": "@app", "scopes": ["openid", "email"], "acr": "phr"}'),
    ("sso.authorized", "", '{"app": "@app", "scopes": ["openid"], "acr": "phr"}'),
    ("sso.token_issued", "", '{"app": "@app", "grant_type": "authorization_code"}'),
    ("sso.token_issued", "", '{"app": "@app", "grant_type": "authorization_code"}'),
    ("sso.token_issued", "", '{"app": "@app", "grant_type": "refresh_token"}'),
    ("sso.refused", "not_assigned", '{"app": "@app"}'),
    ("sso.token_refused", "invalid_grant", '{"app": "@app", "grant_type": "refresh_token"}'),
    ("sso.logout", "", '{"app": "@app"}'),
]
# A handful of apps (client IDs as django-oauth-toolkit makes them), some busier than others: the
# wiki has 4 of every 10 single sign-on events, the mail 3, the CRM 2, payroll and the status page
# half of 1 each.
APPS = {
    "wiki": "XSt1v3KSzs8MGCP7OrSnf18fckeE6LMkJ53DpZD9",
    "mail": "UZdCjExCEcT0zyBmfcz9qLbaD0bl88FpHlZ6xR2e",
    "crm": "RJeR8ujv8ec4CoysNYsDIOUkCOv32vmrPHw1fWCE",
    "payroll": "wLO6slVNyfQo5ZdaJlR08TOZrxLl8PLR7cNod6HO",
    "status": "47jcYGbstxaksjQcrUuOkFvkiU0bPhWcHRLxNmen",
}
APP_SLOTS = ["wiki"] * 8 + ["mail"] * 6 + ["crm"] * 4 + ["payroll", "status"]
# A client ID no event names (an app added today, or a mistyped one).
UNUSED_APP = "Qm0pLk1nVw3sTu5xYz7aBc9dEf2gHi4jKl6mNo8p"

SEED_SQL = [
    # People: person0000001@example.com ..., a name, a random-looking 32-byte handle.
    """
    INSERT INTO accounts_user
        (password, username, email, full_name, user_handle, is_active, role, created_at,
         locked_at, locked_reason)
    SELECT '!', 'person' || lpad(i::text, 7, '0') || '@example.com',
           'person' || lpad(i::text, 7, '0') || '@example.com',
           (ARRAY['Ada','Grace','Alan','Edsger','Barbara','Donald','Frances','Ken'])[1 + i % 8]
             || ' ' || (ARRAY['Lovelace','Hopper','Turing','Dijkstra','Liskov','Knuth','Allen',
                              'Thompson','Smith','Jones'])[1 + (i / 8) % 10] || ' ' || i,
           decode(md5(i::text) || md5('h' || i::text), 'hex'),
           i % 97 <> 0, '', now() - (i % 900) * interval '1 hour',
           CASE WHEN i % 89 = 0 THEN now() END, ''
    FROM generate_series(1, %(people)s) AS i
    """,
    # Seven people in ten have a passkey (one in five of those two), synced or not.
    """
    INSERT INTO passkeys_passkey
        (user_id, credential_id, public_key, alg, sign_count, aaguid, transports,
         backup_eligible, backup_state, uv_initialized, attestation_format, attestation_type,
         attestation_trusted, trust_anchor, authenticator_name, authenticator_attachment,
         is_security_key, is_discoverable, nickname, created_at, created_user_agent,
         last_used_at, last_used_user_agent, is_possibly_cloned)
    SELECT u.id, decode(md5('c' || u.id || '-' || k), 'hex'), '\\xa0'::bytea, -7, 0,
           CASE WHEN u.id % 3 = 0 THEN 'ee882879-721c-4913-9775-3dfcce97072a'::uuid
                ELSE 'fbfc3007-154e-4ecc-8c0b-6e020557d7bd'::uuid END,
           '["internal"]'::jsonb, u.id % 3 <> 0, u.id % 3 <> 0, true, 'none', 'none',
           false, '', CASE WHEN u.id % 3 = 0 THEN 'YubiKey 5' ELSE 'iCloud Keychain' END,
           CASE WHEN u.id % 3 = 0 THEN 'cross-platform' ELSE 'platform' END,
           u.id % 3 = 0, true, '', now(), 'Mozilla/5.0', NULL, '', false
    FROM accounts_user u CROSS JOIN generate_series(1, 2) AS k
    WHERE u.username LIKE 'person%%' AND u.id % 10 < 7 AND (k = 1 OR u.id % 5 = 0)
    """,
    # One person in ten has the password and app.
    """
    INSERT INTO fallback_totpdevice (user_id, secret, created_at, last_used_step)
    SELECT id, 'JBSWY3DPEHPK3PXP', now(), NULL FROM accounts_user
    WHERE username LIKE 'person%%' AND id % 10 IN (7, 0)
    """,
    # The events: spread over 90 days, each about one of the people.
    """
    INSERT INTO audit_auditevent
        (at, action, reason, actor_id, subject_id, subject_label, ip, user_agent, via, detail)
    SELECT now() - (i * (90 * 86400.0 / %(events)s)) * interval '1 second',
           a.action, a.reason,
           CASE WHEN a.reason = '' THEN 1 + (i::bigint * 7919) %% %(people)s END,
           1 + (i::bigint * 7919) %% %(people)s,
           'person' || lpad((1 + (i::bigint * 7919) %% %(people)s)::text, 7, '0') || '@example.com',
           ('10.' || (i %% 250) || '.' || (i / 250 %% 250) || '.' || (i %% 7 + 1))::inet,
           'Mozilla/5.0', 'web', replace(a.detail, '@app', p.client_id)::jsonb
    FROM generate_series(1, %(events)s) AS i
    JOIN (VALUES %(actions)s) AS a(n, action, reason, detail) ON a.n = i %% %(kinds)s
    JOIN (VALUES %(apps)s) AS p(n, client_id) ON p.n = (i / %(kinds)s) %% %(slots)s
    """,
]

# The same on SQLite, which has no generate_series, md5, lpad or interval: a recursive count,
# random bytes where PostgreSQL hashes, and times as Django stores them (text, UTC).
SQLITE_SEED_SQL = [
    """
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %(people)s)
    INSERT INTO accounts_user
        (password, username, email, full_name, user_handle, is_active, role, created_at,
         locked_at, locked_reason)
    SELECT '!', 'person' || substr('000000' || i, -7) || '@example.com',
           'person' || substr('000000' || i, -7) || '@example.com',
           json_extract('["Ada","Grace","Alan","Edsger","Barbara","Donald","Frances","Ken"]',
                        '$[' || (i % 8) || ']')
             || ' ' || json_extract('["Lovelace","Hopper","Turing","Dijkstra","Liskov","Knuth",
                                      "Allen","Thompson","Smith","Jones"]',
                                    '$[' || ((i / 8) % 10) || ']') || ' ' || i,
           randomblob(32), i % 97 <> 0, '',
           strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (i % 900) || ' hours'),
           CASE WHEN i % 89 = 0 THEN strftime('%Y-%m-%d %H:%M:%f', 'now') END, ''
    FROM s
    """,
    """
    WITH k(k) AS (VALUES (1), (2))
    INSERT INTO passkeys_passkey
        (user_id, credential_id, public_key, alg, sign_count, aaguid, transports,
         backup_eligible, backup_state, uv_initialized, attestation_format, attestation_type,
         attestation_trusted, trust_anchor, authenticator_name, authenticator_attachment,
         is_security_key, is_discoverable, nickname, created_at, created_user_agent,
         last_used_at, last_used_user_agent, is_possibly_cloned)
    SELECT u.id, randomblob(16), x'a0', -7, 0,
           CASE WHEN u.id % 3 = 0 THEN 'ee882879721c491397753dfcce97072a'
                ELSE 'fbfc3007154e4ecc8c0b6e020557d7bd' END,
           '["internal"]', u.id % 3 <> 0, u.id % 3 <> 0, 1, 'none', 'none',
           0, '', CASE WHEN u.id % 3 = 0 THEN 'YubiKey 5' ELSE 'iCloud Keychain' END,
           CASE WHEN u.id % 3 = 0 THEN 'cross-platform' ELSE 'platform' END,
           u.id % 3 = 0, 1, '', strftime('%Y-%m-%d %H:%M:%f', 'now'), 'Mozilla/5.0', NULL, '', 0
    FROM accounts_user u CROSS JOIN k
    WHERE u.username LIKE 'person%' AND u.id % 10 < 7 AND (k.k = 1 OR u.id % 5 = 0)
    """,
    """
    INSERT INTO fallback_totpdevice (user_id, secret, created_at, last_used_step)
    SELECT id, 'JBSWY3DPEHPK3PXP', strftime('%Y-%m-%d %H:%M:%f', 'now'), NULL FROM accounts_user
    WHERE username LIKE 'person%' AND id % 10 IN (7, 0)
    """,
    """
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %(events)s),
         a(n, action, reason, detail) AS (VALUES %(actions)s),
         p(n, client_id) AS (VALUES %(apps)s),
         e(i, t) AS (SELECT i, %(now)s - i * (90 * 86400.0 / %(events)s) FROM s)
    INSERT INTO audit_auditevent
        (at, action, reason, actor_id, subject_id, subject_label, ip, user_agent, via, detail)
    SELECT strftime('%Y-%m-%d %H:%M:%S', CAST(t AS INTEGER), 'unixepoch')
             || printf('.%06d', CAST((t - CAST(t AS INTEGER)) * 1000000 AS INTEGER)),
           a.action, a.reason,
           CASE WHEN a.reason = '' THEN 1 + (i * 7919) % %(people)s END,
           1 + (i * 7919) % %(people)s,
           'person' || substr('000000' || (1 + (i * 7919) % %(people)s), -7) || '@example.com',
           '10.' || (i % 250) || '.' || (i / 250 % 250) || '.' || (i % 7 + 1),
           'Mozilla/5.0', 'web', replace(a.detail, '@app', p.client_id)
    FROM e
    JOIN a ON a.n = i % %(kinds)s
    JOIN p ON p.n = (i / %(kinds)s) % %(slots)s
    """,
]


def seed(people: int, events: int) -> dict[str, float]:
    from django.db import connection

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    substitutions = {
        "%(actions)s": ", ".join(
            f"({n}, {quoted(action)}, {quoted(reason)}, {quoted(detail)})"
            for n, (action, reason, detail) in enumerate(ACTIONS)
        ),
        "%(apps)s": ", ".join(f"({n}, {quoted(APPS[name])})" for n, name in enumerate(APP_SLOTS)),
        "%(kinds)s": str(len(ACTIONS)),
        "%(slots)s": str(len(APP_SLOTS)),
        "%(people)s": str(people),
        "%(events)s": str(events),
        "%(now)s": repr(time.time()),
    }
    statements = SQLITE_SEED_SQL if connection.vendor == "sqlite" else SEED_SQL
    timings = {}
    with connection.cursor() as cursor:
        for name, template in zip(
            ("people", "passkeys", "fallback", "events"), statements, strict=True
        ):
            started = time.perf_counter()
            sql = template
            for placeholder, value in substitutions.items():
                sql = sql.replace(placeholder, value)
            cursor.execute(sql.replace("%%", "%"))
            timings[name] = time.perf_counter() - started
        # The people search's key (accounts.models.search_key), which save() sets: these
        # names are ASCII, so lower() is it.
        started = time.perf_counter()
        cursor.execute("UPDATE accounts_user SET name_key = lower(full_name) WHERE name_key = ''")
        timings["search keys"] = time.perf_counter() - started
        started = time.perf_counter()
        cursor.execute("ANALYZE")
        timings["analyze"] = time.perf_counter() - started
    return timings


def pages(people: int) -> list[tuple[str, str]]:
    """(what, path) of every page timed."""
    from threshold.audit.models import AuditEvent
    from threshold.portal.auditlog import AuditFilters, filtered

    middle = AuditEvent.objects.order_by("-at", "-id").values_list("pk", flat=True)[500_000:500_001]
    deep = next(iter(middle), None)
    # Half way down the busiest app's events.
    wiki = filtered(AuditFilters(app=APPS["wiki"])).values_list("pk", flat=True)
    wiki_deep = next(iter(wiki[wiki.count() // 2 :][:1]), None)
    return [
        ("people: first page", "/admin/people"),
        (
            "people: a page deep in the list",
            f"/admin/people?after=person{people // 2:07d}@example.com",
        ),
        ("people: search by email", "/admin/people?q=person0099"),
        ("people: search by name", "/admin/people?q=hopper"),
        ("people: a name nobody has", "/admin/people?q=nobody-has-this"),
        ("people: status locked", "/admin/people?status=locked"),
        ("people: status only the fallback", "/admin/people?status=fallback-only"),
        ("people: status no passkey yet", "/admin/people?status=no-passkey"),
        ("a person", "/admin/people/4242"),
        ("audit: first page", "/admin/audit"),
        ("audit: failures", "/admin/audit?outcome=failure"),
        ("audit: one action", "/admin/audit?action=user.locked"),
        ("audit: one reason", "/admin/audit?reason=credential_unknown"),
        ("audit: one person", "/admin/audit?person=person0004242@example.com"),
        ("audit: one IP", "/admin/audit?ip=10.42.7.3"),
        ("audit: one day", "/admin/audit?since=2026-11-01&until=2026-11-01"),
        (
            "audit: half a million rows down",
            f"/admin/audit?before={deep}" if deep else "/admin/audit",
        ),
        ("audit: the busiest app", f"/admin/audit?app={APPS['wiki']}"),
        (
            "audit: half its events down",
            f"/admin/audit?app={APPS['wiki']}&before={wiki_deep}",
        ),
        ("audit: a quiet app", f"/admin/audit?app={APPS['status']}"),
        ("audit: an app with no events", f"/admin/audit?app={UNUSED_APP}"),
    ]


def measure(client: Any, path: str, repeat: int) -> dict[str, float]:
    for _ in range(3):
        response = client.get(path)
        if response.status_code != 200:  # noqa: PLR2004
            raise SystemExit(f"bench: {path} answered {response.status_code}")
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 2),
    }


def explain(client: Any, path: str) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    # The page's own queries, not the session's lookup (often the slowest on a quiet page).
    own = [query for query in queries.captured_queries if "web_session" not in query["sql"]]
    slowest = max(own or queries.captured_queries, key=lambda query: float(query["time"]))
    with connection.cursor() as cursor:
        verb = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ANALYZE "
        cursor.execute(verb + slowest["sql"])
        print("    " + "\n    ".join(str(row[-1]) for row in cursor.fetchall()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the plan of each page's slowest query",
    )
    args = parser.parse_args()
    if not args.database_url.startswith(("postgres", "sqlite")):
        print(
            "bench: give a --database-url: PostgreSQL (or run under scripts/with-postgres), or"
            " sqlite:////tmp/portal.sqlite3",
            file=sys.stderr,
        )
        return 2
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("THRESHOLD_VAR_DIR", tempfile.mkdtemp(prefix="threshold-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "threshold.settings")
    sys.path.insert(0, str(REPO))

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from threshold import clock
    from threshold.accounts.models import Role, User
    from threshold.sessions.store import LAST_SEEN, SIGNED_IN_AT

    call_command("migrate", "--noinput", verbosity=0)
    # The pages' hashed static names, as `threshold serve` writes them at start-up.
    call_command("collectstatic", "--noinput", verbosity=0)
    if User.objects.exists():
        print("bench: the database has people already; give it an empty one", file=sys.stderr)
        return 2
    print(f"Seeding {args.people:,} people and {args.events:,} audit events ...", flush=True)
    timings = seed(args.people, args.events)
    print("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))

    auditor = User.objects.create_user("bench-auditor@example.com", full_name="Bench Auditor")
    auditor.role = Role.AUDITOR.value
    auditor.save(update_fields=["role"])
    client = Client(HTTP_USER_AGENT="bench", REMOTE_ADDR="127.0.0.1", HTTP_HOST="localhost")
    client.force_login(auditor, backend="threshold.accounts.backends.PasskeyBackend")
    # What a sign-in writes (threshold.sessions.actions.sign_in): the timeouts read it.
    session = client.session
    session[SIGNED_IN_AT] = session[LAST_SEEN] = clock.now()
    session.save()

    results = {}
    print(f"\n{'page':<40} {'median':>9} {'p95':>9}")
    for what, path in pages(args.people):
        figures = measure(client, path, args.repeat)
        results[what] = {"path": path, **figures}
        flag = "" if figures["median_ms"] < TARGET_MS else "  over the target"
        print(f"{what:<40} {figures['median_ms']:>7.1f}ms {figures['p95_ms']:>7.1f}ms{flag}")
        if args.explain:
            explain(client, path)
    if args.output:
        args.output.write_text(
            json.dumps(
                {
                    "database": connection.vendor,
                    "people": args.people,
                    "events": args.events,
                    "seed_s": timings,
                    "pages": results,
                },
                indent=2,
            )
        )
    over = [what for what, figures in results.items() if figures["median_ms"] >= TARGET_MS]
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
