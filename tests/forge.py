"""Building codes by hand, including ones no honest issuer would make, for the verifier's tests."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from sdk import base45, cose, sm2
from sdk.claims import CLAIM_CTI, CLAIM_EXP, CLAIM_IAT, CLAIM_KIND, CLAIM_SUB
from sdk.keys import key_id


def claims(
    kind: int = 1, iat: int = 1_800_000_000, lifetime: int = 60, sub: bytes | None = None, **extra: Any
) -> bytes:
    body: dict[Any, Any] = {CLAIM_KIND: kind, CLAIM_IAT: iat, CLAIM_EXP: iat + lifetime, CLAIM_CTI: os.urandom(8)}
    body[CLAIM_SUB] = sub if sub is not None else os.urandom(10)
    for k, v in extra.items():
        body[int(k[1:]) if k.startswith("c") else k] = v
    return cbor2.dumps(body, canonical=True)


def es256(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """A raw ``r || s`` signature with low s, as the issuers and the phone write it."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return cose.low_s(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def high_s_twin(signature: bytes) -> bytes:
    """The other ES256 signature that verifies as well: (r, n - s) for (r, s)."""
    return signature[:32] + (cose.P256_ORDER - int.from_bytes(signature[32:], "big")).to_bytes(32, "big")


#: ``forge(alg=KEY_ALG)``: the header names the key's own algorithm (ES256 for P-256, -70001 for SM2).
KEY_ALG: Any = object()


def forge(
    key: Any,
    payload: bytes,
    *,
    alg: Any = KEY_ALG,
    kid: bytes | None = None,
    headers: dict[Any, Any] | None = None,
    unprotected: dict[Any, Any] | None = None,
    signer: str = "key",
    tagged: bool = True,
) -> str:
    """A code text with the given headers, signed as *signer* says: key (ES256 with a P-256 key, SM2 with an SM2
    key), es256, sm2, eddsa, hmac (key is bytes) or none."""
    if signer == "key":
        signer = "sm2" if isinstance(key, sm2.Sm2PrivateKey) else "es256"
    if alg is KEY_ALG:
        alg = cose.ALG_SM2 if signer == "sm2" else cose.ALG_ES256
    if kid is None:
        kid = key_id(key.public_key()) if hasattr(key, "public_key") else b"\x00" * 8
    protected_map: dict[Any, Any] = {1: alg, 4: kid}
    if headers:
        protected_map.update(headers)
    protected = cbor2.dumps(protected_map, canonical=True)
    tbs = cose.sig_structure(protected, payload)
    if signer == "es256":
        signature = es256(key, tbs)
    elif signer == "sm2":
        assert isinstance(key, sm2.Sm2PrivateKey)
        signature = key.sign(tbs)
    elif signer == "eddsa":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        signature = key.sign(tbs)
    elif signer == "hmac":
        signature = hmac.new(key, tbs, hashlib.sha256).digest()
    else:
        signature = b""
    body = [protected, unprotected or {}, payload, signature]
    raw = cbor2.dumps(cbor2.CBORTag(18, body) if tagged else body)
    return "CC1:" + base45.b45encode(raw)


def raw_of(code: str) -> bytes:
    return base45.b45decode(code[4:])


def text_of(raw: bytes) -> str:
    return "CC1:" + base45.b45encode(raw)


def refusal(passed: Any, reason: Any, detail: str = "vetoed") -> Any:
    """A refusal carrying the fields of *passed*, as a gate's veto returns it."""
    from sdk.result import refused_like

    return refused_like(passed, reason, detail)
