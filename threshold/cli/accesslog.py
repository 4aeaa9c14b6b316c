"""gunicorn's access log, without the secrets some addresses carry.

An enrollment or recovery link's token is in its path (``/enroll/<token>``):
whoever reads the server's log must not be able to take over an account with
it. Every field a log format can name (the request line, the path, the
Referer, any header or WSGI variable) has the token replaced.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

_TOKEN_IN_PATH = re.compile(r"(/enroll/)[^/?#\s\"]+")


def redact(text: str) -> str:
    return _TOKEN_IN_PATH.sub(r"\1[token]", text)


class RedactingLogger(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for field, value in atoms.items():
            if isinstance(value, str) and "/enroll/" in value:
                atoms[field] = redact(value)
        return atoms
