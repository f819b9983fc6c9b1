"""Rendering code text as a QR symbol (PNG or SVG), always in the alphanumeric mode at level M."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.util import MODE_ALPHA_NUM, QRData

ERROR_CORRECTION = qrcode.constants.ERROR_CORRECT_M


def _qr(text: str, box_size: int = 6, border: int = 4) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=ERROR_CORRECTION, box_size=box_size, border=border)
    mode = MODE_ALPHA_NUM if all(c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:" for c in text) else None
    qr.add_data(QRData(text, mode=mode) if mode else text)
    qr.make(fit=True)
    return qr


def qr_version(text: str) -> int:
    """The smallest QR version holding *text* at error correction M."""
    return int(_qr(text).version)


def png(text: str, box_size: int = 6, border: int = 4) -> bytes:
    img = _qr(text, box_size, border).make_image()
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def svg(text: str) -> str:
    img = _qr(text).make_image(image_factory=qrcode.image.svg.SvgPathFillImage)
    return img.to_string(encoding="unicode")
