"""A venue's code as a printable poster (PNG): the QR code, the venue's name and what to do, in Chinese first."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from issuers import render

#: Fonts searched in this order (Debian's fonts-noto-cjk; scripts/setup installs it).
FONTS = (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
         Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"))
WIDTH = 1240  # A4 at 150 dpi: 1240 x 1754
HEIGHT = 1754
LINES = ("扫码登记 · Scan to check in", "用“一码通城”扫描此码登记", "Open your citycode page and scan this code")


class PosterError(RuntimeError):
    """No font to write the poster with."""


def _font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONTS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    raise PosterError("no CJK font found (install fonts-noto-cjk)")


def poster_png(code: str, venue_name: str) -> bytes:
    """An A4 poster at 150 dpi: the venue's name, the QR code of *code* (readable from a metre), instructions."""
    title, body = _font(72), _font(40)
    page = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(page)
    draw.text((WIDTH // 2, 140), venue_name, font=title, fill="black", anchor="mm")
    qr = Image.open(io.BytesIO(render.png(code, box_size=12, border=4))).convert("RGB")
    side = min(WIDTH - 200, qr.width)
    qr = qr.resize((side, side), Image.Resampling.NEAREST)
    page.paste(qr, ((WIDTH - side) // 2, 260))
    y = 260 + side + 80
    for line in LINES:
        draw.text((WIDTH // 2, y), line, font=body, fill="black", anchor="mm")
        y += 70
    out = io.BytesIO()
    page.save(out, format="PNG", dpi=(150, 150))
    return out.getvalue()
