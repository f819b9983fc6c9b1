"""Verifying SD-JWTs (RFC 9901) signed by an issuer in the trust list.

A receiving system (a clerk's back office) checks: the issuer-signed JWT with the issuer's key
from the trust list (``kid`` header; the key sets the algorithm), ``typ``, ``exp``, ``_sd_alg`` =
sha-256, and that every disclosure ``[salt, name, value]`` hashes to a digest in ``_sd``, names no
plain claim and appears once. It returns the plain claims and the disclosed fields only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt

from sdk import sm2
from sdk.keys import b64u_decode
from sdk.trustlist import TrustList

SD_JWT_TYPE = "citycode-cert+sd-jwt"
MAX_CHARS = 64 * 1024


class SdJwtError(ValueError):
    """The SD-JWT must not be trusted; the message says why."""


def disclosure_digest(disclosure: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(disclosure.encode("ascii")).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class SdJwt:
    issuer: str
    claims: dict[str, Any]
    disclosed: dict[str, Any]


def verify_sd_jwt(token: str, trust: TrustList, *, at: float | None = None, leeway: int = 30) -> SdJwt:
    now = time.time() if at is None else at
    if not isinstance(token, str) or len(token) > MAX_CHARS or "~" not in token or not token.endswith("~"):
        raise SdJwtError("not an SD-JWT without key binding (<jwt>~<disclosures>~)")
    issuer_jwt, *disclosures = token.split("~")[:-1]
    try:
        header = jwt.get_unverified_header(issuer_jwt)
    except jwt.PyJWTError as exc:
        raise SdJwtError(f"issuer JWT unreadable: {exc}") from None
    if header.get("typ") != SD_JWT_TYPE or set(header) - {"typ", "alg", "kid"}:
        raise SdJwtError("unexpected typ or header parameters")
    try:
        key = trust.get(b64u_decode(str(header.get("kid", ""))))
    except ValueError:
        key = None
    if key is None or "cert" not in key.kinds:
        raise SdJwtError("not signed by a certificate issuer in the trust list")
    if key.alg_name == sm2.JWS_ALG and not sm2.available():
        raise SdJwtError(f"signed with SM2: {sm2.INSTALL_HINT}")
    try:
        claims = jwt.decode(issuer_jwt, key.public_key, algorithms=[key.alg_name], leeway=leeway,  # type: ignore[arg-type]
                            options={"require": ["iss", "iat", "exp"], "verify_iat": False}, )
    except jwt.PyJWTError as exc:
        raise SdJwtError(f"issuer JWT rejected: {exc}") from None
    if claims["iss"] != key.issuer:
        raise SdJwtError("iss does not match the signing key's issuer")
    if claims["exp"] < now - leeway:
        raise SdJwtError("expired")
    if claims.get("_sd_alg") != "sha-256" or not isinstance(claims.get("_sd"), list):
        raise SdJwtError("_sd_alg must be sha-256 with an _sd array")
    digests = set(claims["_sd"])
    cert_type = claims.get("type")
    if cert_type is not None and cert_type not in key.cert_types:
        raise SdJwtError(f"{key.issuer} does not issue {cert_type} certificates")
    disclosed: dict[str, Any] = {}
    seen: set[str] = set()
    for disclosure in disclosures:
        digest = disclosure_digest(disclosure)
        if digest not in digests or digest in seen:
            raise SdJwtError("a disclosure is not covered by the signature (or repeated)")
        seen.add(digest)
        try:
            salt, name, value = json.loads(b64u_decode(disclosure))
        except (ValueError, TypeError):
            raise SdJwtError("a disclosure is not [salt, name, value]") from None
        if not isinstance(salt, str) or not isinstance(name, str) or name in claims or name in disclosed:
            raise SdJwtError(f"disclosure name {name!r} is invalid or repeated")
        disclosed[name] = value
    plain = {k: v for k, v in claims.items() if k not in ("_sd", "_sd_alg")}
    return SdJwt(issuer=key.issuer, claims=plain, disclosed=disclosed)
