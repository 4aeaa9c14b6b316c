"""``core.files.create_once``: the first writer's file, whole, and nobody else's."""

from __future__ import annotations

import stat
from pathlib import Path

from threshold.core.files import create_once


def test_the_first_content_stays_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    assert create_once(path, b"first") is True
    assert create_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
