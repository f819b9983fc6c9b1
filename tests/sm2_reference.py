"""SM3 and SM2 signatures written from the standards alone (GB/T 32905, GB/T 32918.2), in plain Python.

This is "a verifier written elsewhere" (docs/codes.md): it shares no code with sdk/sm2.py or its library, so
that the tests can check the library against the standards' worked examples on any curve (the library knows
only sm2p256v1) and check that what citycode signs is what the documentation says:
Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), e = SM3(Z || M), r = (e + x1) mod n, and
s = ((1 + d)^-1 (k - r d)) mod n. Slow (tens of milliseconds) and not constant-time: for tests only.
"""

from __future__ import annotations

from dataclasses import dataclass

_IV = [0x7380166F, 0x4914B2B9, 0x172442D7, 0xDA8A0600, 0xA96F30BC, 0x163138AA, 0xE38DEE4D, 0xB0FB0E4E]
_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    n %= 32
    return ((x << n) | (x >> (32 - n))) & _MASK


def _p0(x: int) -> int:
    return x ^ _rotl(x, 9) ^ _rotl(x, 17)


def _p1(x: int) -> int:
    return x ^ _rotl(x, 15) ^ _rotl(x, 23)


def sm3(message: bytes) -> bytes:
    """SM3 (GB/T 32905-2016 section 5)."""
    length = len(message) * 8
    padded = message + b"\x80" + b"\0" * ((55 - len(message)) % 64) + length.to_bytes(8, "big")
    v = list(_IV)
    for block in range(0, len(padded), 64):
        w = [int.from_bytes(padded[block + 4 * i: block + 4 * i + 4], "big") for i in range(16)]
        for j in range(16, 68):
            w.append(_p1(w[j - 16] ^ w[j - 9] ^ _rotl(w[j - 3], 15)) ^ _rotl(w[j - 13], 7) ^ w[j - 6])
        w1 = [w[j] ^ w[j + 4] for j in range(64)]
        a, b, c, d, e, f, g, h = v
        for j in range(64):
            t = 0x79CC4519 if j < 16 else 0x7A879D8A
            ss1 = _rotl((_rotl(a, 12) + e + _rotl(t, j)) & _MASK, 7)
            ss2 = ss1 ^ _rotl(a, 12)
            ff = a ^ b ^ c if j < 16 else (a & b) | (a & c) | (b & c)
            gg = e ^ f ^ g if j < 16 else (e & f) | (~e & g)
            tt1 = (ff + d + ss2 + w1[j]) & _MASK
            tt2 = (gg + h + ss1 + w[j]) & _MASK
            d, c, b, a = c, _rotl(b, 9), a, tt1
            h, g, f, e = g, _rotl(f, 19), e, _p0(tt2)
        v = [x ^ y for x, y in zip(v, (a, b, c, d, e, f, g, h), strict=True)]
    return b"".join(x.to_bytes(4, "big") for x in v)


@dataclass(frozen=True)
class Curve:
    p: int
    a: int
    b: int
    n: int
    gx: int
    gy: int

    def add(self, p1: tuple[int, int] | None, p2: tuple[int, int] | None) -> tuple[int, int] | None:
        if p1 is None:
            return p2
        if p2 is None:
            return p1
        (x1, y1), (x2, y2) = p1, p2
        if x1 == x2 and (y1 + y2) % self.p == 0:
            return None
        if p1 == p2:
            lam = (3 * x1 * x1 + self.a) * pow(2 * y1, -1, self.p) % self.p
        else:
            lam = (y2 - y1) * pow(x2 - x1, -1, self.p) % self.p
        x3 = (lam * lam - x1 - x2) % self.p
        return x3, (lam * (x1 - x3) - y1) % self.p

    def mul(self, k: int, point: tuple[int, int] | None = None) -> tuple[int, int] | None:
        result, addend = None, point if point is not None else (self.gx, self.gy)
        while k:
            if k & 1:
                result = self.add(result, addend)
            addend = self.add(addend, addend)
            k >>= 1
        return result


SM2P256V1 = Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
#: The example curve of GB/T 32918.2-2016 annex A (and draft-shen-sm2-ecdsa-02 appendix A.1).
EXAMPLE_FP256 = Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
)


def _b32(value: int) -> bytes:
    return value.to_bytes(32, "big")


def z_value(curve: Curve, user_id: bytes, public: tuple[int, int]) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), ENTL the id's length in bits, 2 bytes."""
    return sm3((len(user_id) * 8).to_bytes(2, "big") + user_id + _b32(curve.a) + _b32(curve.b) + _b32(curve.gx)
               + _b32(curve.gy) + _b32(public[0]) + _b32(public[1]))


def digest(curve: Curve, user_id: bytes, public: tuple[int, int], message: bytes) -> int:
    """e = SM3(Z || M) as an integer."""
    return int.from_bytes(sm3(z_value(curve, user_id, public) + message), "big")


def sign(curve: Curve, d: int, k: int, message: bytes, user_id: bytes) -> tuple[int, int]:
    """GB/T 32918.2 section 6.1 with the nonce *k* given (as the worked example gives it)."""
    public = curve.mul(d)
    assert public is not None
    e = digest(curve, user_id, public, message)
    point = curve.mul(k)
    assert point is not None
    r = (e + point[0]) % curve.n
    s = pow(1 + d, -1, curve.n) * (k - r * d) % curve.n
    return r, s


def verify(curve: Curve, public: tuple[int, int], message: bytes, r: int, s: int, user_id: bytes) -> bool:
    """GB/T 32918.2 section 7.1."""
    if not (0 < r < curve.n and 0 < s < curve.n):
        return False
    e = digest(curve, user_id, public, message)
    t = (r + s) % curve.n
    if t == 0:
        return False
    point = curve.add(curve.mul(s), curve.mul(t, public))
    return point is not None and (e + point[0]) % curve.n == r
