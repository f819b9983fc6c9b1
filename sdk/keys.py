"""Public keys a verifier trusts, their key ids and their JWK form (RFC 7517 / RFC 8037)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sdk import sm2
from sdk.cose import ALG_EDDSA, ALG_ES256, ALG_IDS, ALG_NAMES, ALG_SM2, KID_LENGTH
from sdk.sm2 import Sm2PublicKey

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | Sm2PublicKey

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64url text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: PublicKey) -> bytes:
    """The key id: the first 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER.

    Derived from the key itself, so a trust list can check every id and two keys
    never share one by accident (a lesson from the EU DCC gateway).
    """
    if isinstance(public_key, Sm2PublicKey):
        spki = public_key.spki_der()
    else:
        spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()[:KID_LENGTH]


def alg_for_key(public_key: PublicKey) -> int:
    """The one algorithm a key is used with: the key decides, never the code."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return ALG_ES256
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ALG_EDDSA
    if isinstance(public_key, Sm2PublicKey):
        return ALG_SM2
    raise ValueError("only P-256, Ed25519 and SM2 (sm2p256v1) keys are supported")


def load_public_pem(pem: bytes) -> PublicKey:
    """A PEM ``PUBLIC KEY`` of one of the supported types (SM2 read without its library); ValueError else."""
    sm2_key = sm2.load_public_pem(pem)
    if sm2_key is not None:
        return sm2_key
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("not a P-256, Ed25519 or SM2 public key")
    alg_for_key(key)
    return key


def public_pem(public_key: PublicKey) -> bytes:
    """The PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo) of *public_key*."""
    if isinstance(public_key, Sm2PublicKey):
        return public_key.public_pem()
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_to_jwk(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)}
    if isinstance(public_key, Sm2PublicKey):  # crv "SM2" is this product's own (none is registered)
        point = public_key.point()
        return {"kty": "EC", "crv": sm2.JWK_CRV, "x": b64u_encode(point[:32]), "y": b64u_encode(point[32:])}
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64u_encode(numbers.x.to_bytes(32, "big")),
        "y": b64u_encode(numbers.y.to_bytes(32, "big")),
    }


def public_key_from_jwk(jwk: Any) -> PublicKey:
    """Build a public key from a JWK; raise ValueError on anything else (private parts included)."""
    if not isinstance(jwk, dict):
        raise ValueError("JWK must be an object")
    if "d" in jwk:
        raise ValueError("JWK carries a private key")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC" and crv == "P-256":
        x, y = b64u_decode(jwk["x"]), b64u_decode(jwk["y"])
        if len(x) != 32 or len(y) != 32:
            raise ValueError("P-256 coordinates must be 32 bytes")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        ).public_key()
    if kty == "EC" and crv == sm2.JWK_CRV:
        return Sm2PublicKey.from_bytes(b64u_decode(jwk["x"]), b64u_decode(jwk["y"]))
    if kty == "OKP" and crv == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64u_decode(jwk["x"]))
    raise ValueError(f"unsupported key type {kty!r}/{crv!r}")


def verify_es256(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """True when the raw ``r || s`` ES256 *signature* (COSE and WebCrypto form) over *data* verifies."""
    if len(signature) != 64:
        return False
    try:
        public_key.verify(der_signature(signature), data, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


def der_signature(signature: bytes) -> bytes:
    """The DER ``SEQUENCE { INTEGER r, INTEGER s }`` of a raw 64-byte ``r || s``: what
    ``encode_dss_signature(r, s)`` writes, from the bytes (a third faster than through two integers)."""
    r, s = _der_integer(signature[:32]), _der_integer(signature[32:])
    return b"".join((b"\x30", bytes((len(r) + len(s) + 4, 2, len(r))), r, bytes((2, len(s))), s))


def _der_integer(value: bytes) -> bytes:
    """The content of a DER INTEGER for the unsigned big-endian *value*: no leading zero bytes, but one
    when the first bit is set (or the value is 0)."""
    value = value.lstrip(b"\0")
    return b"\0" + value if not value or value[0] & 0x80 else value


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One issuer key from a trust list."""

    kid: bytes
    issuer: str
    public_key: PublicKey
    alg: int
    not_before: int
    not_after: int
    kinds: frozenset[str] = field(default_factory=frozenset)
    issuer_name: str = ""
    #: Certificate types this issuer may sign (for keys trusted for the ``cert`` kind).
    cert_types: frozenset[str] = field(default_factory=frozenset)
    #: The issuer's organisation code (a department's unified social credit code): the issuer code its
    #: certificate identifiers must carry. None for an issuer that publishes none.
    org_code: str | None = None

    @property
    def alg_name(self) -> str:
        return ALG_NAMES[self.alg]

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when *signature* (COSE raw form) over *data* verifies with this key."""
        if self.alg == ALG_ES256:
            return verify_es256(self.public_key, signature, data)  # type: ignore[arg-type]
        if isinstance(self.public_key, Sm2PublicKey):  # Sm2Unavailable without the library: the verifier
            return self.alg == ALG_SM2 and self.public_key.verify(signature, data)  # checks sm2.available() first
        if len(signature) != 64:
            return False
        try:
            self.public_key.verify(signature, data)  # type: ignore[call-arg]
        except (InvalidSignature, ValueError):
            return False
        return True


__all__ = [
    "ALG_IDS",
    "PublicKey",
    "TrustedKey",
    "alg_for_key",
    "b64u_decode",
    "b64u_encode",
    "key_id",
    "load_public_pem",
    "public_key_from_jwk",
    "public_key_to_jwk",
    "public_pem",
    "verify_es256",
]
