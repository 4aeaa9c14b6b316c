"""``threshold cleanup``: drop expired sessions, used challenges of expired ceremonies and old
failure counters."""

from __future__ import annotations

import argparse

from threshold.cli.commands import Command, Subcommands


def register(commands: Subcommands) -> list[Command]:
    cleanup_parser = commands.add_parser("cleanup", help="remove expired sessions and ceremonies")
    return [Command(cleanup_parser, cleanup)]


def cleanup(args: argparse.Namespace) -> int:
    from threshold.devices.actions import delete_expired_requests
    from threshold.fallback.actions import delete_stale_counters
    from threshold.passkeys.pending import delete_expired
    from threshold.sessions.store import SessionStore

    SessionStore.clear_expired()
    ceremonies = delete_expired()
    counters = delete_stale_counters()
    print(
        f"Removed expired sessions, {ceremonies} used challenges of expired ceremonies and "
        f"{counters} old sign-in failure counters."
    )
    print(f"Removed {delete_expired_requests()} used requests of Threshold Verify devices.")
    return 0
