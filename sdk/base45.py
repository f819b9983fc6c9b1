"""Base45 (RFC 9285): bytes as text in the QR code alphanumeric alphabet.

Two bytes become three characters, so a code stays in the QR alphanumeric mode
(5.5 bits a character) instead of the byte mode. Decoding is strict: a character
outside the alphabet, a dangling single character or a group whose value exceeds
what the encoder can produce raises :class:`Base45Error`.
"""

from __future__ import annotations

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
    """Decode base45 *text*; raise :class:`Base45Error` on anything not valid.

    Every three-character group ``c d e`` stands for ``c + 45*d + 2025*e``. Rather than loop in
    Python, the digits of all groups are placed in 24-bit slots of three big integers, so that one
    integer expression computes every group at once (no carries: a group is below 2**17).
    """
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
    groups = full // 3
    slots = bytearray(3 * groups)
    slots[2::3] = values[0:full:3]
    c = int.from_bytes(slots, "big")
    slots[2::3] = values[1:full:3]
    d = int.from_bytes(slots, "big")
    slots[2::3] = values[2:full:3]
    e = int.from_bytes(slots, "big")
    packed = (c + 45 * d + 2025 * e).to_bytes(3 * groups, "big")
    if packed[0::3].count(0) != groups:
        raise Base45Error("group value out of range")
    out = bytearray(2 * groups)
    out[0::2] = packed[1::3]
    out[1::2] = packed[2::3]
    if tail == 2:
        last = values[full] + 45 * values[full + 1]
        if last > 0xFF:
            raise Base45Error("final group value out of range")
        out.append(last)
    return bytes(out)
