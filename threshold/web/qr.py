"""QR codes for pages (an authenticator app's set-up, a recovery link, the device app's set-up)."""

from __future__ import annotations


def qr_data_uri(text: str) -> str:
    """``text`` as a QR code, an SVG ``data:`` URI for an ``<img>`` (no third-party request)."""
    # Imported here: only the few pages that show a code need segno in a worker's memory.
    import segno  # noqa: PLC0415

    data_uri: str = segno.make(text, error="m").svg_data_uri(scale=4, border=2)
    return data_uri
