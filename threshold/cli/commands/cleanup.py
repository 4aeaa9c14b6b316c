"""``threshold cleanup``: drop expired sessions, used challenges of expired ceremonies, old
failure counters and expired app tokens; send the back-channel logouts that are due."""

from __future__ import annotations

import argparse

from threshold.cli.commands import Command, Subcommands


def register(commands: Subcommands) -> list[Command]:
    cleanup_parser = commands.add_parser("cleanup", help="remove expired sessions and ceremonies")
    return [Command(cleanup_parser, cleanup)]


def cleanup(args: argparse.Namespace) -> int:
    from threshold.audit.actions import Origin
    from threshold.devices.actions import delete_expired_requests
    from threshold.fallback.actions import delete_stale_counters
    from threshold.passkeys.pending import delete_expired
    from threshold.sessions.actions import delete_timed_out_sessions
    from threshold.sessions.store import SessionStore
    from threshold.sso import actions as sso
    from threshold.sso import logout

    # Timed-out sessions end first, so that their apps hear of it (back-channel logout); each
    # has its session.expired row.
    timed_out = delete_timed_out_sessions(Origin.cli())
    SessionStore.clear_expired()
    ceremonies = delete_expired()
    counters = delete_stale_counters()
    sign_ins = sso.delete_expired()
    delivered = logout.deliver_due()
    logout.delete_finished()
    print(
        f"Removed expired sessions ({timed_out} timed out), {ceremonies} used challenges of "
        f"expired ceremonies and {counters} old sign-in failure counters; removed expired app "
        f"tokens and {sign_ins} finished app sign-ins; sent {delivered} back-channel logouts."
    )
    print(f"Removed {delete_expired_requests()} used requests of Threshold Verify devices.")
    return 0
