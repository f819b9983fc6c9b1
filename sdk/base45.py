"""Base45 (RFC 9285): bytes as text in the QR code alphanumeric alphabet.

Two bytes become three characters, so a code stays in the QR alphanumeric mode
(5.5 bits a character) instead of the byte mode. Decoding is strict: a character
outside the alphabet, a dangling single character or a group whose value exceeds
what the encoder can produce raises :class:`Base45Error`.
"""

from __future__ import annotations

import struct

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

_INVALID = 0xFF
_TABLE = bytearray([_INVALID] * 256)
for _value, _char in enumerate(ALPHABET):
    _TABLE[ord(_char)] = _value
_DECODE_TABLE = bytes(_TABLE)


class Base45Error(ValueError):
    """The text is not valid base45."""


def b45encode(data: bytes) -> str:
    """Encode *data* as base45 text."""
    out: list[str] = []
    pairs = len(data) - len(data) % 2
    for i in range(0, pairs, 2):
        rest, c = divmod(data[i] * 256 + data[i + 1], 45)
        e, d = divmod(rest, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str | bytes) -> bytes:
    """Decode base45 *text*; raise :class:`Base45Error` on anything not valid."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    except UnicodeEncodeError:
        raise Base45Error("non-ASCII character") from None
    values = raw.translate(_DECODE_TABLE)
    if _INVALID in values:
        raise Base45Error("character outside the base45 alphabet")
    n = len(values)
    tail = n % 3
    if tail == 1:
        raise Base45Error("dangling character")
    full = n - tail
    groups = [
        c + 45 * d + 2025 * e
        for c, d, e in zip(values[0:full:3], values[1:full:3], values[2:full:3])
    ]
    try:
        out = struct.pack(f">{len(groups)}H", *groups)
    except struct.error:
        raise Base45Error("group value out of range") from None
    if tail == 2:
        last = values[full] + 45 * values[full + 1]
        if last > 0xFF:
            raise Base45Error("final group value out of range")
        out += bytes((last,))
    return out
