"""``threshold apps`` and ``threshold keys``: the apps people sign in to with Threshold, and the
keys that sign their ID tokens."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from threshold.cli.commands import Command, Subcommands
from threshold.cli.output import printable, table


def register(commands: Subcommands) -> list[Command]:
    apps = commands.add_parser(
        "apps", help="apps that sign people in with Threshold (OpenID Connect)"
    )
    sub = apps.add_subparsers(dest="apps_command")
    list_parser = sub.add_parser("list", help="every app")
    list_parser.add_argument("--json", action="store_true", help="print the list as JSON")
    add = sub.add_parser("add", help="add an app; prints its client ID and secret, once")
    add.add_argument("name", help="the app's name, as people see it")
    add.add_argument(
        "--redirect-uri", action="append", default=[], required=True, dest="redirect_uris",
        help="where the app receives the sign-in (repeat for several)",
    )  # fmt: skip
    add.add_argument(
        "--post-logout-redirect-uri", action="append", default=[], dest="post_logout_uris",
        help="where the app may send people after signing out (repeat for several)",
    )  # fmt: skip
    add.add_argument("--backchannel-logout-uri", default="", help="told when a session ends")
    add.add_argument("--initiate-login-uri", default="", help="the link on the My apps tile")
    add.add_argument("--public", action="store_true", help="a public client: PKCE, no secret")
    add.add_argument("--id-token-alg", choices=("RS256", "ES256"), default="RS256")
    add.add_argument(
        "--require-consent", action="store_true", help="ask people before the first sign-in"
    )
    add.add_argument(
        "--first-party", action="store_true",
        help="the organisation's own app: may sign people in inside itself with a passkey",
    )  # fmt: skip
    add.add_argument("--json", action="store_true", help="print the client ID and secret as JSON")
    change = sub.add_parser(
        "change", help="change an app's settings; those not given stay as they are"
    )
    change.add_argument("client_id")
    change.add_argument("--name", help="the app's name, as people see it")
    change.add_argument(
        "--redirect-uri", action="append", dest="redirect_uris",
        help="replaces the redirect URIs (repeat for several)",
    )  # fmt: skip
    change.add_argument(
        "--post-logout-redirect-uri", action="append", dest="post_logout_uris",
        help="replaces the post-logout redirect URIs (repeat; '' for none)",
    )  # fmt: skip
    change.add_argument("--backchannel-logout-uri", help="told when a session ends ('' for none)")
    change.add_argument("--initiate-login-uri", help="the My apps tile's link ('' for none)")
    change.add_argument("--id-token-alg", choices=("RS256", "ES256"))
    change.add_argument(
        "--require-consent", action=argparse.BooleanOptionalAction, default=None,
        help="ask people before their first sign-in",
    )  # fmt: skip
    change.add_argument(
        "--first-party", action=argparse.BooleanOptionalAction, default=None,
        help="the organisation's own app: may sign people in inside itself with a passkey",
    )  # fmt: skip
    remove = sub.add_parser("remove", help="remove an app (its tokens stop working)")
    remove.add_argument("client_id")
    rotate = sub.add_parser("rotate-secret", help="a new secret; the old one stops working")
    rotate.add_argument("client_id")
    rotate.add_argument("--json", action="store_true", help="print the secret as JSON")
    assign = sub.add_parser("assign", help="who may use the app: everyone, or some groups")
    assign.add_argument("client_id")
    # Exactly one of them: do_assign_app says so in words when neither is given.
    who = assign.add_mutually_exclusive_group()
    who.add_argument("--everyone", action="store_true")
    # --group A B and --group A --group B alike.
    who.add_argument(
        "--group", action="extend", nargs="+", default=[], dest="groups", metavar="NAME"
    )

    keys = commands.add_parser("keys", help="the keys that sign ID tokens")
    keys_sub = keys.add_subparsers(dest="keys_command")
    keys_list = keys_sub.add_parser("list", help="the keys in the JWKS")
    rotate_keys = keys_sub.add_parser(
        "rotate", help="new signing keys; the old ones stay published until their tokens expire"
    )
    return [
        Command(apps, list_apps),
        Command(list_parser, list_apps),
        Command(add, add_app),
        Command(change, change_app),
        Command(remove, remove_app),
        Command(rotate, rotate_secret),
        Command(assign, assign_app),
        Command(keys, list_keys),
        Command(keys_list, list_keys),
        Command(rotate_keys, rotate_keys_command),
    ]


def _refused(message: str) -> int:
    print(f"threshold: {printable(message)}", file=sys.stderr)
    return 2


def list_apps(args: argparse.Namespace) -> int:
    from threshold.sso.models import Application

    apps = list(Application.objects.prefetch_related("groups").order_by("name", "client_id"))
    rows = [
        {
            "client_id": app.client_id,
            "name": app.name,
            "public": app.client_type == Application.CLIENT_PUBLIC,
            "redirect_uris": app.redirect_uris.split(),
            "post_logout_redirect_uris": app.post_logout_redirect_uris.split(),
            "backchannel_logout_uri": app.backchannel_logout_uri or None,
            "initiate_login_uri": app.initiate_login_uri or None,
            "id_token_alg": app.algorithm,
            "require_consent": app.require_consent,
            "first_party": app.first_party,
            "assigned_to": "everyone" if app.for_everyone else [g.name for g in app.groups.all()],
        }
        for app in apps
    ]
    if getattr(args, "json", False):
        print(json.dumps(rows))
        return 0
    if not rows:
        print("No apps yet. Add one with `threshold apps add NAME --redirect-uri URI`.")
        return 0
    table(
        [("CLIENT ID", "NAME", "TYPE", "ALG", "WHO")]
        + [
            (
                row["client_id"],
                row["name"],
                "public" if row["public"] else "confidential",
                row["id_token_alg"],
                _who(row["assigned_to"]),
            )
            for row in rows
        ]
    )
    return 0


def add_app(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.sso.actions import AppError, do_add_app

    try:
        new = do_add_app(
            args.name,
            Origin.cli(),
            redirect_uris=args.redirect_uris,
            post_logout_redirect_uris=args.post_logout_uris,
            backchannel_logout_uri=args.backchannel_logout_uri,
            initiate_login_uri=args.initiate_login_uri,
            public=args.public,
            id_token_alg=args.id_token_alg,
            require_consent=args.require_consent,
            first_party=args.first_party,
        )
    except AppError as exc:
        return _refused(str(exc))
    client_id = new.application.client_id
    if args.json:
        print(json.dumps({"client_id": client_id, "client_secret": new.client_secret}))
        return 0
    print(f"Added {printable(new.application.name)}.")
    print(f"Client ID:     {client_id}")
    if new.client_secret is not None:
        print(f"Client secret: {new.client_secret}")
        print("The secret is shown this once: put it in the app's configuration now.")
    return 0


def change_app(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.sso.actions import (
        AppError,
        check_settings,
        current_settings,
        do_change_app,
        find_app,
    )
    from threshold.sso.models import Application

    try:
        app = find_app(args.client_id)
        now = current_settings(app)
        given = {
            "name": args.name,
            "redirect_uris": args.redirect_uris,
            "post_logout_redirect_uris": (
                None if args.post_logout_uris is None else [u for u in args.post_logout_uris if u]
            ),
            "backchannel_logout_uri": args.backchannel_logout_uri,
            "initiate_login_uri": args.initiate_login_uri,
            "id_token_alg": args.id_token_alg,
            "require_consent": args.require_consent,
            "first_party": args.first_party,
        }
        settings = check_settings(
            **{
                **dataclasses.asdict(now),
                **{name: value for name, value in given.items() if value is not None},
            },
            public=app.client_type == Application.CLIENT_PUBLIC,
        )
        changed = do_change_app(app, settings, Origin.cli())
    except AppError as exc:
        return _refused(str(exc))
    if not changed:
        print(f"{printable(app.name)} already has those settings; nothing changed.")
    else:
        print(f"Changed {', '.join(changed)} of {printable(app.name)}.")
    return 0


def remove_app(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.sso.actions import AppError, do_remove_app, find_app

    try:
        app = find_app(args.client_id)
    except AppError as exc:
        return _refused(str(exc))
    do_remove_app(app, Origin.cli())
    print(f"Removed {printable(app.name)}; its tokens no longer work.")
    return 0


def rotate_secret(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.sso.actions import AppError, do_rotate_secret, find_app

    try:
        secret = do_rotate_secret(find_app(args.client_id), Origin.cli())
    except AppError as exc:
        return _refused(str(exc))
    if args.json:
        print(json.dumps({"client_id": args.client_id.strip(), "client_secret": secret}))
        return 0
    print(f"Client secret: {secret}")
    print("The old secret no longer works. The new one is shown this once.")
    return 0


def _who(assigned_to: str | list[str]) -> str:
    """The WHO column: everyone, the groups, or nobody (as the admin portal says it)."""
    if assigned_to == "everyone":
        return "everyone"
    return ", ".join(assigned_to) or "nobody"


def assign_app(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.sso.actions import AppError, do_assign_app, find_app

    try:
        app = find_app(args.client_id)
        assigned = do_assign_app(app, Origin.cli(), everyone=args.everyone, group_names=args.groups)
    except AppError as exc:
        return _refused(str(exc))
    already = "" if assigned.changed else " (already: nothing changed)"
    if args.everyone:
        print(f"Everyone may use {printable(app.name)}{already}.")
    else:
        names = ", ".join(printable(group.name) for group in assigned.groups)
        print(f"Only the members of {names} may use {printable(app.name)}{already}.")
    return 0


def list_keys(args: argparse.Namespace) -> int:
    from threshold.sso import keys

    table(
        [("KID", "ALG", "STATUS")]
        + [
            (key.kid, key.alg, "active" if key.retired_at is None else "retired")
            for key in keys.all_keys()
        ]
    )
    return 0


def rotate_keys_command(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Action, Origin, record
    from threshold.sso import keys

    try:
        rotation = keys.rotate()
    except keys.KeysError as exc:
        return _refused(str(exc))
    record(
        Action.SSO_KEYS_ROTATED,
        Origin.cli(),
        new=rotation.new,
        retired=rotation.retired,
        dropped=rotation.dropped,
    )
    if rotation.from_environment:
        print(f"The keys come from {keys.ENV_VARIABLE}: set it to this on every server:")
        print(json.dumps(rotation.document))
        return 0
    print(f"New signing keys: {', '.join(rotation.new)}.")
    print("The previous keys stay in the JWKS until the tokens they signed have expired.")
    return 0
