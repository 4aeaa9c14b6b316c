"""A software Threshold Verify for the server's tests: a real P-256 key that signs real requests.

It speaks the device API as docs/device-api.md describes it (compact JWS, ES256) with
jwcrypto, as the server verifies them; nothing is mocked. The desktop app itself
(verify/threshold_verify) is driven against a running server in tests/device/.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jwcrypto import jwk, jws

TYPE = "threshold-device-request+jwt"


@dataclass
class SoftDevice:
    key: jwk.JWK = field(default_factory=lambda: jwk.JWK.generate(kty="EC", crv="P-256"))
    device_id: str | None = None
    # The device's clock: tests move it to make requests early or late.
    now: Callable[[], float] = time.time

    @property
    def public_jwk(self) -> dict[str, str]:
        return dict(json.loads(self.key.export_public()))

    def sign(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        jti: str | None = None,
        iat: float | None = None,
        lifetime: float = 60,
        with_jwk: bool = False,
        key: jwk.JWK | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        issued = self.now() if iat is None else iat
        claims = {
            "jti": jti or secrets.token_urlsafe(16),
            "iat": int(issued),
            "exp": int(issued + lifetime),
            "htu": path,
            "body": body or {},
        }
        protected = {"alg": "ES256", "typ": TYPE}
        if with_jwk:
            protected["jwk"] = self.public_jwk  # type: ignore[assignment]
        else:
            assert self.device_id, "the device has no ID yet"
            protected["kid"] = self.device_id
        protected.update(header or {})
        token = jws.JWS(json.dumps(claims))
        token.add_signature(key or self.key, alg="ES256", protected=json.dumps(protected))
        return str(token.serialize(compact=True))
