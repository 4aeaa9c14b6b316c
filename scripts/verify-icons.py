"""Draw Threshold Verify's home-screen icons (threshold/devices/static/threshold/verify/).

Run once; the files are committed. A blue rounded square with a white ring and a tick,
as an SVG, as 192 and 512 pixel PNGs, and as iOS's 180 pixel square (drawn here, 4x4 supersampled: no image library).
Usage: python3 scripts/verify-icons.py
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "threshold/devices/static/threshold/verify"
BLUE = (0x1A, 0x53, 0xE6)
WHITE = (0xFF, 0xFF, 0xFF)
CORNER = 0.2
RING = (0.5, 0.5, 0.3, 0.035)  # centre x, y, radius, half-width
TICK = [(0.37, 0.51), (0.46, 0.60), (0.64, 0.41)]
TICK_HALF_WIDTH = 0.04

SVG = f"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100" role="img" aria-label="Threshold Verify">
  <rect width="100" height="100" rx="{CORNER * 100:g}" fill="#1a53e6"/>
  <circle cx="50" cy="50" r="{RING[2] * 100:g}" fill="none" stroke="#fff" stroke-width="{RING[3] * 200:g}"/>
  <polyline points="{" ".join(f"{x * 100:g},{y * 100:g}" for x, y in TICK)}" fill="none" stroke="#fff" stroke-width="{TICK_HALF_WIDTH * 200:g}" stroke-linecap="round" stroke-linejoin="round"/>
</svg>
"""


def _segment_distance(
    px: float, py: float, a: tuple[float, float], b: tuple[float, float]
) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def _inside_square(x: float, y: float, corner: float) -> bool:
    if not corner:
        return True
    cx = min(max(x, corner), 1 - corner)
    cy = min(max(y, corner), 1 - corner)
    return math.hypot(x - cx, y - cy) <= corner


def _white(x: float, y: float) -> bool:
    cx, cy, radius, half = RING
    if abs(math.hypot(x - cx, y - cy) - radius) <= half:
        return True
    return any(_segment_distance(x, y, TICK[i], TICK[i + 1]) <= TICK_HALF_WIDTH for i in range(2))


def png(size: int, samples: int = 4, corner: float = CORNER) -> bytes:
    rows = bytearray()
    for j in range(size):
        rows.append(0)  # filter: none
        for i in range(size):
            colour = [0.0, 0.0, 0.0]
            alpha = 0.0
            for sj in range(samples):
                for si in range(samples):
                    x = (i + (si + 0.5) / samples) / size
                    y = (j + (sj + 0.5) / samples) / size
                    if not _inside_square(x, y, corner):
                        continue
                    rgb = WHITE if _white(x, y) else BLUE
                    alpha += 1
                    for k in range(3):
                        colour[k] += rgb[k]
            count = samples * samples
            if alpha:
                rows.extend(round(c / alpha) for c in colour)
            else:
                rows.extend((0, 0, 0))
            rows.append(round(255 * alpha / count))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "icon.svg").write_text(SVG)
    for size in (192, 512):
        (OUT / f"icon-{size}.png").write_bytes(png(size))
    # iOS rounds the corners itself and paints transparent ones black: a full square.
    (OUT / "apple-touch-icon.png").write_bytes(png(180, corner=0))
