"""Reading QR codes out of images: a PNG or JPEG file, or a camera frame.

Two decoders are supported; ``auto`` takes zxing-cpp when it is installed (faster and
more robust on distorted frames in our measurements, see bench/) and pyzbar otherwise.
Both need Pillow to read the image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
DECODERS = ("zxing", "pyzbar")


class ImageError(ValueError):
    """The input is not an image this module can read."""


def _load(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, Path)):
        try:
            data = Path(image).read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read image file: {exc.strerror}") from None
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        raise ImageError("expected image bytes, a path or a PIL image")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError("image file too large")
    try:
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_IMAGE_PIXELS:
            raise ImageError("image has too many pixels")
        img.load()
    except ImageError:
        raise
    except Exception:
        raise ImageError("not a readable image") from None
    return img


def available_decoders() -> list[str]:
    names = []
    try:
        import zxingcpp  # noqa: F401

        names.append("zxing")
    except ImportError:
        pass
    try:
        from pyzbar import pyzbar  # noqa: F401

        names.append("pyzbar")
    except (ImportError, OSError):  # OSError: libzbar missing
        pass
    return names


def decode_image(image: Any, decoder: str = "auto") -> list[str]:
    """Return the texts of all QR codes found in *image*, in the decoder's order."""
    if decoder == "auto":
        found = available_decoders()
        if not found:
            raise ImageError("no QR decoder installed (install zxing-cpp or pyzbar)")
        decoder = found[0]
    if decoder not in DECODERS:
        raise ImageError(f"unknown decoder {decoder!r}")
    img = _load(image)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    gray = img.convert("L")
    if decoder == "zxing":
        import zxingcpp

        qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
        return [r.text for r in zxingcpp.read_barcodes(gray, formats=qr_only) if r.valid]
    from pyzbar import pyzbar

    return [s.data.decode("latin-1") for s in pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])]
