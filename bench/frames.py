"""Synthetic camera frames holding a QR code, for the benchmark and for tests.

Only Pillow and numpy are used; every frame is deterministic for a given seed.

- :func:`clean_image`: the QR code exactly as :func:`issuers.render.png` renders it (a "clean crop").
- :func:`camera_frame`: the code as a cheap gate camera might see it: on a textured, unevenly lit
  background, scaled, rotated, off-centre, blurred, noisy and optionally JPEG re-encoded.
- :func:`distorted_frames`: a batch of "moderately distorted" frames with random parameters.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from issuers import render

#: Grey levels of a printed/displayed code as a camera sees them (never pure black or white).
DARK_LEVEL = 38.0
LIGHT_LEVEL = 215.0
#: Upscaling factor before the anti-aliased downscale to a fractional module size.
_SUPERSAMPLE = 8


def clean_image(text: str) -> Image.Image:
    """The QR code of *text* as rendered by :func:`issuers.render.png` (alphanumeric mode, EC level M)."""
    img = Image.open(io.BytesIO(render.png(text)))
    img.load()
    return img


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A float32 grey background: a lighting gradient, low-frequency texture and some clutter."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    ramp = (xs * math.cos(theta) + ys * math.sin(theta)) / math.hypot(width, height)
    base = rng.uniform(95.0, 150.0) + rng.uniform(30.0, 70.0) * ramp

    # Low-frequency texture: coarse random grid upsampled smoothly (a wall, a table, a jacket).
    coarse = rng.normal(0.0, 1.0, size=(height // 40 + 2, width // 40 + 2)).astype(np.float32)
    coarse_img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    texture = np.asarray(coarse_img, dtype=np.float32) * rng.uniform(8.0, 18.0)

    # Fine grain (fabric, paper) at a lower amplitude.
    fine = rng.normal(0.0, rng.uniform(2.0, 5.0), size=(height, width)).astype(np.float32)

    # A few flat shapes of other grey levels: clutter the decoder has to ignore.
    # Drawn on an 8-bit image around 128 (Pillow blurs only 8-bit images), then centred on 0.
    clutter = Image.new("L", (width, height), 128)
    draw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(40, 300)), int(rng.integers(20, 200))
        shade = 128 + int(rng.integers(-45, 46))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=shade)
        else:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=shade)
    clutter = clutter.filter(ImageFilter.GaussianBlur(2.0))
    return base + texture + fine + (np.asarray(clutter, dtype=np.float32) - 128.0)


def _qr_patch(text: str, module_px: float, angle_deg: float) -> tuple[Image.Image, Image.Image]:
    """The QR (quiet zone included) scaled to *module_px* per module and rotated; with its paste mask."""
    modules = Image.open(io.BytesIO(render.png(text, box_size=1, border=4))).convert("L")
    n = modules.width
    target = max(n, round(n * module_px))
    # Upscale without interpolation, then downscale with area averaging: edges anti-aliased as a lens would.
    big = modules.resize((n * _SUPERSAMPLE, n * _SUPERSAMPLE), Image.Resampling.NEAREST)
    scaled = big.resize((target, target), Image.Resampling.BOX)
    levels = np.asarray(scaled, dtype=np.float32) / 255.0 * (LIGHT_LEVEL - DARK_LEVEL) + DARK_LEVEL
    patch = Image.fromarray(levels)
    mask = Image.new("L", (target, target), 255)
    patch = patch.rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0.0)
    mask = mask.rotate(angle_deg, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    return patch, mask


def camera_frame(
    text: str,
    *,
    module_px: float = 5.0,
    angle_deg: float = 12.0,
    blur: float = 1.0,
    noise: float = 8.0,
    jpeg_quality: int | None = None,
    seed: int = 0,
    size: tuple[int, int] = (1280, 960),
) -> Image.Image:
    """A grayscale camera frame (mode ``L``, *size* pixels) showing the QR code of *text*.

    The code, with its 4-module quiet zone, is scaled so that one module is about *module_px*
    pixels, rotated by *angle_deg* degrees, pasted off-centre on a textured, unevenly lit
    background; the frame is then Gaussian-blurred (radius *blur*), given Gaussian pixel
    noise of standard deviation *noise* and, if *jpeg_quality* is set, JPEG re-encoded.
    The same arguments always give the same pixels.
    """
    if module_px <= 0:
        raise ValueError("module_px must be positive")
    width, height = size
    rng = np.random.default_rng(seed)
    frame = _background(rng, width, height)

    patch, mask = _qr_patch(text, module_px, angle_deg)
    pw, ph = patch.size
    if pw > width or ph > height:
        raise ValueError(f"a {pw}x{ph} code does not fit in a {width}x{height} frame")
    # Off-centre: shift the code's centre by 10-30 % of the free room in each direction, either way.
    room_x, room_y = (width - pw) / 2, (height - ph) / 2
    dx = room_x * rng.uniform(0.1, 0.3) * (1 if rng.random() < 0.5 else -1)
    dy = room_y * rng.uniform(0.1, 0.3) * (1 if rng.random() < 0.5 else -1)
    left, top = round(room_x + dx), round(room_y + dy)

    alpha = np.asarray(mask, dtype=np.float32) / 255.0
    # The code shares the scene's lighting: scale it by the local background brightness.
    region = frame[top : top + ph, left : left + pw]
    light = float(np.clip(region.mean() / 125.0, 0.75, 1.2))
    code = np.asarray(patch, dtype=np.float32) * light
    frame[top : top + ph, left : left + pw] = region * (1.0 - alpha) + code * alpha

    img = Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8))
    if blur > 0:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    if noise > 0:
        noisy = np.asarray(img, dtype=np.float32) + rng.normal(0.0, noise, size=(height, width))
        img = Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    if jpeg_quality is not None:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(jpeg_quality))
        img = Image.open(io.BytesIO(buf.getvalue()))
        img.load()
    return img


def distorted_frames(text: str, n: int, seed: int) -> list[Image.Image]:
    """*n* moderately distorted frames: rotation 0-30°, blur 0.6-1.4, noise 4-12, JPEG 60, 4.5-7 px a module."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        frames.append(
            camera_frame(
                text,
                module_px=float(rng.uniform(4.5, 7.0)),
                angle_deg=float(rng.uniform(0.0, 30.0)),
                blur=float(rng.uniform(0.6, 1.4)),
                noise=float(rng.uniform(4.0, 12.0)),
                jpeg_quality=60,
                seed=int(rng.integers(0, 2**31)),
            )
        )
    return frames
