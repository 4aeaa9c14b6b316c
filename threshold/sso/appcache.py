"""Each server process keeps the apps it has read, so that ``/authorize`` and ``/token`` do not
SELECT the app on every request.

An app read here (``client_id`` -> ``Application``) is used again while both hold:

- nothing changed an app on this machine since: every save or delete of an ``Application``
  (and of its group assignment), in any process — a server worker, ``threshold apps …``,
  the admin portal — touches ``var/sso-apps.changed`` (THRESHOLD_VAR_DIR), and each use
  compares that file's stamp, as ``keys.py`` does for the signing keys;
- it was read at most ``MAX_AGE`` seconds ago: the bound for a change made by another
  server on the same database (scale-out), which does not touch this machine's file.

So a new secret, a removed app, a changed redirect URI or group assignment applies at once on
one machine and within ``MAX_AGE`` seconds across machines. A change written with a bulk
``QuerySet.update()``, which sends no signal, is seen within ``MAX_AGE`` seconds too.

The names of the groups a group-assigned app is assigned to (application ID -> names) are kept
the same way, for ``/userinfo``, which compares them with the person's groups that it reads
with the token: a removed group is a change too (its assignments go with it, by cascade, with
no signal of their own; a new group may take its name).
"""

from __future__ import annotations

import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

MAX_AGE = 10.0
_MAX_APPS = 1000

_lock = threading.Lock()
_apps: dict[str, tuple[float, Any, Any]] = {}
_group_names: dict[int, tuple[float, Any, frozenset[str]]] = {}


def _path() -> Path:
    return Path(settings.THRESHOLD.var_dir) / "sso-apps.changed"


@lru_cache(maxsize=4)
def _stamp_file(var_dir: str) -> str:
    """``_path()`` as a string, built once: the stamp is read at /authorize and /token."""
    return os.path.join(var_dir, "sso-apps.changed")


def _stamp() -> Any:
    try:
        stat = os.stat(_stamp_file(str(settings.THRESHOLD.var_dir)))
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def get(client_id: str) -> Any:
    """The app kept for ``client_id``, if it may still be used."""
    kept = _apps.get(client_id)
    if kept is None:
        return None
    read_at, stamp, application = kept
    if time.monotonic() - read_at > MAX_AGE or stamp != _stamp():
        _apps.pop(client_id, None)
        return None
    return application


def group_names(application_id: int) -> frozenset[str] | None:
    """The names of the groups kept for the app ``application_id``, if they may still be used."""
    kept = _group_names.get(application_id)
    if kept is None:
        return None
    read_at, stamp, names = kept
    if time.monotonic() - read_at > MAX_AGE or stamp != _stamp():
        _group_names.pop(application_id, None)
        return None
    return names


def stamp() -> Any:
    """The change stamp to keep with an app: read it before reading the app."""
    return _stamp()


def keep(client_id: str, application: Any, stamp_before: Any) -> None:
    with _lock:
        if len(_apps) >= _MAX_APPS:
            _apps.clear()
        _apps[client_id] = (time.monotonic(), stamp_before, application)


def keep_group_names(application_id: int, names: frozenset[str], stamp_before: Any) -> None:
    with _lock:
        if len(_group_names) >= _MAX_APPS:
            _group_names.clear()
        _group_names[application_id] = (time.monotonic(), stamp_before, names)


def changed(*args: Any, **kwargs: Any) -> None:
    """An app or a group changed (a signal receiver): forget every kept app and app's group
    names on this machine, now and once the change is committed (a process could read the old
    row in between)."""
    _touch()
    transaction.on_commit(_touch)


def _touch() -> None:
    _apps.clear()
    _group_names.clear()
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new size each time (a counter), so that the stamp moves even within the
    # file system's timestamp granularity.
    with _lock:
        try:
            count = len(path.read_bytes())
        except FileNotFoundError:
            count = 0
        path.write_bytes(b"." * ((count % 4096) + 1))
