"""SM2 signatures with SM3 (GB/T 32918.2, GB/T 32905) on the curve sm2p256v1 (GB/T 32918.5), user id
``1234567812345678`` (the standard's default, GM/T 0009): the national algorithms an issuer may sign with.

The arithmetic is the library's: ``tongsuopy`` (a binding of Tongsuo, the OpenSSL fork that carries SM2), the
fastest of the candidates that passed the standard's vectors (``python -m bench.sm2``, docs/codes.md). It is an
optional extra (``pip install ./sdk[sm2]``) imported on first use only, so that a gate without it still installs
and verifies ES256; on such a gate an SM2 code is refused with the reason that says so (fail closed), never
accepted and never an exception.

What does not need the library is here in plain Python: the key's form (its SubjectPublicKeyInfo, its JWK, the
check that the point is on the curve), so that key ids and trust lists read the same with or without it.

Identifiers (none is registered for SM2 with IANA, so both are this product's own and say so in docs/codes.md):
COSE ``alg`` -70001 (the private-use range, below -65536, RFC 9053 section 16 / IANA COSE Algorithms) and JWS
``alg`` ``"SM2SM3"``; JWK ``{"kty": "EC", "crv": "SM2", "x", "y"}`` (``crv`` also unregistered). A signature
is ``r || s``, 32 bytes each, big-endian, in COSE and in JWS alike.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import Algorithm

#: COSE algorithm identifier of SM2 with SM3 (private use: no value is registered).
ALG_SM2 = -70001
#: The JWS ``alg`` of SM2 with SM3 (not registered with IANA).
JWS_ALG = "SM2SM3"
#: The JWK ``crv`` of sm2p256v1 (not registered with IANA).
JWK_CRV = "SM2"
#: The signer's distinguishing identifier in Z (GB/T 32918.2 section 5.5; GM/T 0009's default).
DEFAULT_USER_ID = b"1234567812345678"
SIGNATURE_LENGTH = 64

# sm2p256v1 (GB/T 32918.5-2017).
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

#: DER of a SubjectPublicKeyInfo of an sm2p256v1 key, up to the point's 64 bytes: id-ecPublicKey with the
#: named curve 1.2.156.10197.1.301 and an uncompressed point (04 || x || y).
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
#: The curve's OID as DER content, found in a PKCS#8 private key of sm2p256v1.
_CURVE_OID = bytes.fromhex("06082a811ccf5501822d")
_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END \1-----")

INSTALL_HINT = "SM2 needs the SDK's sm2 extra (pip install 'citycode-sdk[sm2]', the library tongsuopy)"


class Sm2Unavailable(RuntimeError):
    """The SM2 library is not installed here: SM2 signatures can be neither made nor checked."""


_backend: Any = None


def _lib() -> Any:
    """The library's modules (ec, hashes, serialization, utils), imported on first use."""
    global _backend
    if _backend is None:
        try:
            from tongsuopy.crypto import hashes, serialization
            from tongsuopy.crypto.asymciphers import ec
        except ImportError:
            raise Sm2Unavailable(INSTALL_HINT) from None
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

        _backend = (ec, hashes, serialization, ec.ECDSA(hashes.SM3()), decode_dss_signature, encode_dss_signature)
    return _backend


def available() -> bool:
    """Whether this installation can make and check SM2 signatures."""
    try:
        _lib()
    except Sm2Unavailable:
        return False
    return True


def _pem_der(pem: bytes, label: str) -> bytes | None:
    match = _PEM.search(pem)
    if match is None or match.group(1).decode() != label:
        return None
    try:
        return base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except ValueError:
        return None


@dataclass(frozen=True, eq=True)
class Sm2PublicKey:
    """An sm2p256v1 public key (the point checked to be on the curve); verifying needs the library."""

    x: int
    y: int
    _native: list[Any] = field(default_factory=list, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not (0 <= self.x < P and 0 <= self.y < P) or (self.y * self.y - (self.x**3 + A * self.x + B)) % P:
            raise ValueError("not a point of the curve sm2p256v1")

    @classmethod
    def from_bytes(cls, x: bytes, y: bytes) -> Sm2PublicKey:
        if len(x) != 32 or len(y) != 32:
            raise ValueError("SM2 coordinates must be 32 bytes")
        return cls(int.from_bytes(x, "big"), int.from_bytes(y, "big"))

    def point(self) -> bytes:
        """x || y, 32 bytes each."""
        return self.x.to_bytes(32, "big") + self.y.to_bytes(32, "big")

    def spki_der(self) -> bytes:
        return _SPKI_PREFIX + self.point()

    def public_pem(self) -> bytes:
        body = base64.encodebytes(self.spki_der()).replace(b"\n", b"")
        lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        return b"-----BEGIN PUBLIC KEY-----\n" + lines + b"\n-----END PUBLIC KEY-----\n"

    def _key(self) -> Any:
        if not self._native:
            ec = _lib()[0]
            self._native.append(ec.EllipticCurvePublicNumbers(self.x, self.y, ec.SM2()).public_key())
        return self._native[0]

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when the 64-byte ``r || s`` *signature* over *data* verifies (Z with the default user id);
        :class:`Sm2Unavailable` without the library."""
        _, _, _, algorithm, _, encode = _lib()
        if len(signature) != SIGNATURE_LENGTH:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        if not (0 < r < N and 0 < s < N):
            return False
        try:
            self._key().verify(encode(r, s), data, algorithm)
        except Exception:  # InvalidSignature of the library's own class, or its refusal of the input
            return False
        return True


class Sm2PrivateKey:
    """An sm2p256v1 private key, held by the library."""

    def __init__(self, native: Any) -> None:
        self._native = native
        numbers = native.public_key().public_numbers()
        self._public = Sm2PublicKey(numbers.x, numbers.y)

    @classmethod
    def generate(cls) -> Sm2PrivateKey:
        ec = _lib()[0]
        return cls(ec.generate_private_key(ec.SM2()))

    @classmethod
    def from_value(cls, d: int) -> Sm2PrivateKey:
        ec = _lib()[0]
        return cls(ec.derive_private_key(d, ec.SM2()))

    @classmethod
    def from_pem(cls, pem: bytes) -> Sm2PrivateKey:
        serialization = _lib()[2]
        key = serialization.load_pem_private_key(pem, password=None)
        if getattr(key.curve, "name", None) != "SM2":
            raise ValueError("not an SM2 private key")
        return cls(key)

    def private_pem(self) -> bytes:
        serialization = _lib()[2]
        return bytes(self._native.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))

    def public_key(self) -> Sm2PublicKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        """The 64-byte ``r || s`` SM2 signature of *data* (Z with the default user id, then SM3)."""
        _, _, _, algorithm, decode, _ = _lib()
        r, s = decode(self._native.sign(data, algorithm))
        return bytes(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def load_public_pem(pem: bytes) -> Sm2PublicKey | None:
    """The SM2 key of a PEM ``PUBLIC KEY`` of sm2p256v1; None for any other PEM (another curve, another type)."""
    der = _pem_der(pem, "PUBLIC KEY")
    if der is None or len(der) != len(_SPKI_PREFIX) + 64 or not der.startswith(_SPKI_PREFIX):
        return None
    return Sm2PublicKey.from_bytes(der[-64:-32], der[-32:])


def is_private_pem(pem: bytes) -> bool:
    """Whether *pem* is a PKCS#8 private key of sm2p256v1 (which pyca/cryptography cannot load)."""
    der = _pem_der(pem, "PRIVATE KEY")
    return der is not None and _CURVE_OID in der[:40]


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Sm2JwsAlgorithm(Algorithm):
    """``SM2SM3`` for PyJWT: ``jwt.encode(..., algorithm="SM2SM3")`` with an :class:`Sm2PrivateKey` and
    ``jwt.decode(..., algorithms=["SM2SM3"])`` with an :class:`Sm2PublicKey`; the signature is ``r || s``."""

    def prepare_key(self, key: Any) -> Any:
        if not isinstance(key, Sm2PrivateKey | Sm2PublicKey):
            raise jwt.InvalidKeyError("SM2SM3 takes an SM2 key")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        if not isinstance(key, Sm2PrivateKey):
            raise jwt.InvalidKeyError("SM2SM3 signs with an SM2 private key")
        return key.sign(msg)

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        public = key.public_key() if isinstance(key, Sm2PrivateKey) else key
        return isinstance(public, Sm2PublicKey) and public.verify(sig, msg)

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        public = key_obj.public_key() if isinstance(key_obj, Sm2PrivateKey) else key_obj
        jwk = {"kty": "EC", "crv": JWK_CRV, "x": _b64u(public.point()[:32]), "y": _b64u(public.point()[32:])}
        if as_dict:
            return jwk
        return json.dumps(jwk)

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        data = json.loads(jwk) if isinstance(jwk, str) else jwk
        if not isinstance(data, dict) or data.get("kty") != "EC" or data.get("crv") != JWK_CRV or "d" in data:
            raise jwt.InvalidKeyError("not a public SM2 JWK")
        pad = "=="
        return Sm2PublicKey.from_bytes(base64.urlsafe_b64decode(data["x"] + pad),
                                       base64.urlsafe_b64decode(data["y"] + pad))


def _register() -> None:
    with contextlib.suppress(ValueError):  # registered already (the module reloaded)
        jwt.register_algorithm(JWS_ALG, Sm2JwsAlgorithm())


_register()


__all__ = [
    "ALG_SM2",
    "DEFAULT_USER_ID",
    "JWK_CRV",
    "JWS_ALG",
    "Sm2PrivateKey",
    "Sm2PublicKey",
    "Sm2Unavailable",
    "available",
    "is_private_pem",
    "load_public_pem",
]
