"""The page's own QR encoder (codeservice/static/qr.js), run in Node.js: every symbol it draws decodes to its
text with zxing-cpp and pyzbar, at the version the qrcode package chooses, with each of the eight masks."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
import qrcode
from PIL import Image

from sdk import base45
from sdk.image import decode_image

QR_JS = Path(__file__).resolve().parent.parent / "codeservice" / "static" / "qr.js"
RUNNER = """
const qr = require(process.argv[1]);
const cases = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = cases.map(([text, mask]) => {
  try {
    const r = mask === null ? qr.encode(text) : qr.encode(text, mask);
    return {version: r.version, rows: r.modules.map(row => row.map(b => (b ? "1" : "0")).join(""))};
  } catch (e) { return {error: String(e.message)}; }
});
process.stdout.write(JSON.stringify(out));
"""


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is needed to test the page's QR encoder (CI=true)")
        pytest.skip("node not installed")
    return found


def encode(cases: list[tuple[str, int | None]]) -> list[dict]:
    done = subprocess.run([node(), "-e", RUNNER, str(QR_JS)], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def picture(rows: list[str], scale: int = 4) -> Image.Image:
    size = len(rows)
    image = Image.new("L", (size + 8, size + 8), 255)
    for y, row in enumerate(rows):
        for x, cell in enumerate(row):
            if cell == "1":
                image.putpixel((x + 4, y + 4), 0)
    return image.resize(((size + 8) * scale, (size + 8) * scale), Image.NEAREST)


def qrcode_version(text: str) -> int:
    reference = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    reference.add_data(text)
    reference.make(fit=True)
    return int(reference.version)


def test_symbols_decode_at_the_reference_version_for_every_length():
    rng = random.Random(18004)
    texts = ["CC1:" + base45.b45encode(rng.randbytes(n)) for n in (0, 1, 2, 7, 40, 120, 193, 289, 320, 380, 400)]
    for text, drawn in zip(texts, encode([(t, None) for t in texts]), strict=True):
        assert "error" not in drawn, drawn
        assert drawn["version"] == qrcode_version(text), text
        for decoder in ("zxing", "pyzbar"):
            assert decode_image(picture(drawn["rows"]), decoder=decoder) == [text], (decoder, len(text))


def test_every_mask_gives_a_readable_symbol():
    text = "CC1:" + base45.b45encode(random.Random(8).randbytes(289))  # a ride code's size: version 13
    for mask, drawn in enumerate(encode([(text, mask) for mask in range(8)])):
        assert drawn["version"] == 13
        assert decode_image(picture(drawn["rows"]), decoder="zxing") == [text], mask


def test_text_it_cannot_draw_is_refused_with_a_message():
    lower, huge = encode([("cc1:lowercase", None), ("A" * 2000, None)])
    assert lower["error"] == "not QR alphanumeric text"
    assert "too long" in huge["error"]
