"""Printed cards (实体卡): signing the long-lived card code, and drawing the card a printer prints.

A card is one code of kind ``card`` (sdk/claims.py): the resident's pseudonymous subject, the card's id as the
code's ``cti`` and its status-list index in the card claim, signed by the card issuer's own key, valid for
months. What is printed is the QR symbol of that code and the display name the resident chose, nothing else.
"""

from __future__ import annotations

import io
import os
import unicodedata
from pathlib import Path

from issuers import render
from issuers.codes import encode_claims, sign_payload, to_text
from issuers.keyring import Signer
from sdk.claims import CARD_STATUS_INDEX, CLAIM_CARD

CARD_ID_LENGTH = 8
#: ISO/IEC 7810 ID-1 (85.60 × 53.98 mm) at 300 dots an inch.
CARD_SIZE = (1011, 638)
DPI = 300
MAX_NAME = 40
#: Fonts for the printed name, by script: Noto Sans CJK (Han and Latin), Tibetan Machine Uni, DejaVu.
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
CJK_FONTS = ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSerifCJK-Regular.ttc")
TIBETAN_FONTS = ("TibetanMachineUni.ttf", "NotoSerifTibetan-Regular.ttf")
LATIN_FONTS = ("DejaVuSans.ttf",)


class CardError(ValueError):
    """A card that cannot be made (a name that cannot be printed, a bad format)."""


def new_card_id() -> bytes:
    return os.urandom(CARD_ID_LENGTH)


def issue_card_code(
    signer: Signer, *, subject: bytes, card_id: bytes, status_index: int, issued_at: int, expires_at: int
) -> str:
    """The card's code text: kind ``card``, *card_id* as its cti, *status_index* in the card claim."""
    if len(card_id) != CARD_ID_LENGTH:
        raise CardError(f"a card id is {CARD_ID_LENGTH} bytes")
    if not 0 < issued_at < expires_at:
        raise CardError("a card expires after it is issued")
    if type(status_index) is not int or status_index < 0:
        raise CardError("status index must be a non-negative integer")
    payload = encode_claims("card", issued_at=issued_at, expires_at=expires_at, subject=subject, code_id=card_id,
                            extra={CLAIM_CARD: {CARD_STATUS_INDEX: status_index}}, city=signer.city)
    return to_text(sign_payload(signer, payload))


def clean_name(name: str) -> str:
    """The display name as it is printed: trimmed, 1 to 40 printable characters (any script)."""
    if not isinstance(name, str):
        raise CardError("the name to print must be text")
    cleaned = " ".join(name.split())
    if not 0 < len(cleaned) <= MAX_NAME:
        raise CardError(f"the name to print: 1 to {MAX_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in cleaned):
        raise CardError("the name to print has characters that cannot be printed")
    return cleaned


def _font_file(name: str) -> Path | None:
    wanted: tuple[str, ...]
    if any("\u0f00" <= c <= "\u0fff" for c in name):
        wanted = TIBETAN_FONTS
    elif all(ord(c) < 0x250 for c in name):
        wanted = (*LATIN_FONTS, *CJK_FONTS)
    else:
        wanted = CJK_FONTS
    for directory in FONT_DIRS:
        if not directory.is_dir():
            continue
        for file_name in wanted:
            found = next(directory.rglob(file_name), None)
            if found is not None:
                return found
    return None


def render_card(code: str, name: str, fmt: str = "png") -> bytes:
    """The printable card: the QR symbol of *code* on the left, *name* on the right; PNG or PDF at 300 dpi."""
    from PIL import Image, ImageDraw, ImageFont

    if fmt not in ("png", "pdf"):
        raise CardError("format: png or pdf")
    name = clean_name(name)
    width, height = CARD_SIZE
    card = Image.new("RGB", CARD_SIZE, "white")
    modules = 17 + 4 * render.qr_version(code) + 2 * 4  # the symbol and its quiet zone of 4 modules
    box_size = max(2, (height - 40) // modules)
    symbol = Image.open(io.BytesIO(render.png(code, box_size=box_size, border=4))).convert("RGB")
    top = (height - symbol.size[1]) // 2
    card.paste(symbol, (20, top))
    draw = ImageDraw.Draw(card)
    left = 20 + symbol.size[0] + 30
    room = width - left - 30
    font_file = _font_file(name)
    size = 72
    while True:
        font = ImageFont.truetype(str(font_file), size) if font_file else ImageFont.load_default(size)
        box = draw.textbbox((0, 0), name, font=font)
        if box[2] - box[0] <= room or size <= 24:
            break
        size -= 4
    if box[2] - box[0] > room:  # still too long at the smallest size: two lines, split near the middle
        half = len(name) // 2
        lines = [name[:half].strip(), name[half:].strip()]
    else:
        lines = [name]
    line_height = box[3] - box[1] + 16
    y = (height - line_height * len(lines)) // 2
    for line in lines:
        draw.text((left, y), line, fill="black", font=font)
        y += line_height
    draw.rectangle((0, 0, width - 1, height - 1), outline=(160, 160, 160), width=2)  # where to cut
    out = io.BytesIO()
    if fmt == "pdf":
        card.save(out, format="PDF", resolution=DPI)
    else:
        card.save(out, format="PNG", dpi=(DPI, DPI))
    return out.getvalue()
