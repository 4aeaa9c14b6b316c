"""Files a server makes for itself under ``var/`` (its signing keys)."""

from __future__ import annotations

import os
from pathlib import Path


def create_once(path: Path, content: bytes) -> bool:
    """Write ``content`` to a new file ``path`` (mode 0600) unless one exists; True if this call
    made it. Two processes that both find no file each write their own whole, and ``link()``,
    which refuses to replace a file, lets exactly one of them become ``path``."""
    temporary = path.with_suffix(f".{os.getpid()}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True
