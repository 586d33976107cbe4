"""Decision regions as a PNG, drawn with NumPy and zlib alone (no imaging library).

As TensorFlow Playground draws them: each grid cell tinted with its predicted class's colour,
stronger where the model is surer, smoothly interpolated between cells; the training points on
top as full-colour dots with a white ring. The same palette colours the confusion matrix's
labels on the page (``PALETTE`` / ``class_colour``).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from app.crud.pictures import RegionsPicture

__all__ = ["PALETTE", "class_colour", "encode_png", "render_regions"]

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
"""Class colours (matplotlib's tab10), repeated past ten classes."""

IMAGE_SIZE = 360
"""Pixels per side of the picture."""


def class_colour(k: int) -> tuple[int, int, int]:
    """The colour of class index k."""
    return PALETTE[k % len(PALETTE)]


def encode_png(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 image as PNG bytes (8-bit RGB, filter 0 on every row)."""
    h, w, _ = rgb.shape
    rows = np.zeros((h, 1 + 3 * w), dtype=np.uint8)
    rows[:, 1:] = rgb.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _upsample(cells: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of an (n, n, 3) float image to (size, size, 3), cell centres aligned."""
    n = cells.shape[0]
    pos = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = (pos - lo)[:, None]
    rows = cells[lo] * (1 - frac)[:, :, None] + cells[hi] * frac[:, :, None]
    return rows[:, lo] * (1 - frac)[None, :, :] + rows[:, hi] * frac[None, :, :]


def _disk(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets of a dot: (dy, dx, inner) where inner marks the coloured part, not the ring."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(dy, dx)
    keep = d <= radius
    return dy[keep], dx[keep], d[keep] <= radius - 1.2


def render_regions(picture: RegionsPicture, size: int = IMAGE_SIZE) -> bytes:
    """The PNG of a run's stored decision regions with its training points."""
    palette = np.array([class_colour(k) for k in range(max(picture.n_classes, 1))], dtype=float)
    colours = palette[picture.classes % len(palette)]
    # Confidence runs from 1/C (a coin toss: nearly white) to 1 (the class colour, softened).
    chance = 1.0 / max(picture.n_classes, 2)
    sure = np.clip((picture.confidence / 255.0 - chance) / (1 - chance), 0, 1)[:, :, None]
    alpha = 0.12 + 0.5 * sure
    cells = 255 * (1 - alpha) + colours * alpha
    image = _upsample(cells, size)
    x0, x1, y0, y1 = picture.extent
    px = (picture.points[:, 0] - x0) / (x1 - x0) * size
    py = (y1 - picture.points[:, 1]) / (y1 - y0) * size
    dy, dx, inner = _disk(3.6)
    for x, y, label in zip(px.astype(int), py.astype(int), picture.point_labels, strict=True):
        ys, xs = y + dy, x + dx
        ok = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < size)
        image[ys[ok], xs[ok]] = 255.0
        ok &= inner
        image[ys[ok], xs[ok]] = palette[int(label) % len(palette)]
    return encode_png(np.clip(np.round(image), 0, 255).astype(np.uint8))
