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
    Python, the digit values of all groups are read as one big integer, 24 bits a group, and three
    masks pick out every group's ``c``, ``d`` and ``e`` at once, so that one integer expression
    computes every group (no carries: a group is below 2**17, and a group above 0xFFFF shows in its
    top byte).
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
    low, high = _masks(groups)
    digits = int.from_bytes(values[:full] if tail else values, "big")
    packed = ((digits >> 16) & low) + 45 * ((digits >> 8) & low) + 2025 * (digits & low)
    if packed & high:
        raise Base45Error("group value out of range")
    group_bytes = packed.to_bytes(3 * groups, "big")
    out = bytearray(2 * groups)
    out[0::2] = group_bytes[1::3]
    out[1::2] = group_bytes[2::3]
    if tail == 2:
        last = values[full] + 45 * values[full + 1]
        if last > 0xFF:
            raise Base45Error("final group value out of range")
        out.append(last)
    return bytes(out)


_MASKS: dict[int, tuple[int, int]] = {}


def _masks(groups: int) -> tuple[int, int]:
    """For *groups* 24-bit groups: the mask of every group's low byte, and of every group's top byte."""
    masks = _MASKS.get(groups)
    if masks is None:
        masks = (int.from_bytes(b"\0\0\xff" * groups, "big"), int.from_bytes(b"\xff\0\0" * groups, "big"))
        if groups <= 1024:  # every code (at most 2048 characters) is one of these lengths
            _MASKS[groups] = masks
    return masks
