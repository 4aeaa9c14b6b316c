"""What the app keeps on this machine: its accounts, the TPM's wrapped keys and the PIN's hash.

One JSON file in the app's home (``--home``, THRESHOLD_VERIFY_HOME, else the platform's
data directory), readable by its owner only. Software keys are in the OS keyring, not here.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def default_home() -> Path:
    override = os.environ.get("THRESHOLD_VERIFY_HOME")
    if override:
        return Path(override)
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "Threshold Verify"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Threshold Verify"
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "threshold-verify"


@dataclass
class Account:
    server: str  # "https://id.example.com"
    device_id: str
    username: str
    store: str  # "tpm" or "software"
    key_ref: str


@dataclass
class State:
    accounts: list[Account] = field(default_factory=list)
    # The device PIN: an Argon2id hash, and its throttle.
    pin_hash: str = ""
    pin_failures: int = 0
    pin_not_before: float = 0.0
    # The TPM store's wrapped keys (ref -> "public:private", hex).
    tpm_blobs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, home: Path) -> State:
        path = home / "state.json"
        if not path.exists():
            return cls()
        data: dict[str, Any] = json.loads(path.read_text())
        accounts = [Account(**account) for account in data.pop("accounts", [])]
        return cls(accounts=accounts, **data)

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = home / "state.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.chmod(0o600)
        temporary.replace(path)
