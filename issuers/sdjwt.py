"""Issuing SD-JWTs (RFC 9901): every field as a salted digest, only the chosen disclosures attached.

Serialisation: ``<issuer-signed JWT>~<disclosure>~...~`` (no key binding: the recipient fetched it
once from the service over an authenticated channel). Format and checks: sdk/sdjwt.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from issuers.keyring import Signer
from sdk.keys import b64u_encode
from sdk.sdjwt import SD_JWT_TYPE, disclosure_digest

DECOYS = 2


def make_disclosure(name: str, value: Any) -> str:
    salt = b64u_encode(os.urandom(16))
    return b64u_encode(json.dumps([salt, name, value], ensure_ascii=False, separators=(",", ":")).encode())


def issue_sd_jwt(
    signer: Signer,
    plain: Mapping[str, Any],
    fields: Mapping[str, Any],
    disclose: Iterable[str],
    *,
    lifetime: int,
    now: float | None = None,
) -> str:
    """Sign *plain* claims and digests of all *fields*; attach disclosures for *disclose* only."""
    issued = int(time.time() if now is None else now)
    wanted = set(disclose)
    unknown = wanted - set(fields)
    if unknown:
        raise ValueError(f"cannot disclose unknown fields {sorted(unknown)}")
    disclosures = {name: make_disclosure(name, value) for name, value in fields.items()}
    digests = [disclosure_digest(d) for d in disclosures.values()]
    digests += [disclosure_digest(b64u_encode(os.urandom(32))) for _ in range(DECOYS)]  # hide the field count
    claims = {**plain, "iss": signer.issuer, "iat": issued, "exp": issued + lifetime, "_sd_alg": "sha-256",
              "_sd": sorted(digests)}
    token = jwt.encode(claims, signer.private_key, algorithm=signer.alg_name,  # type: ignore[arg-type]
                       headers={"typ": SD_JWT_TYPE, "kid": b64u_encode(signer.kid)})
    return token + "~" + "".join(disclosures[name] + "~" for name in fields if name in wanted)
