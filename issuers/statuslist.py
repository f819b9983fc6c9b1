"""Signing an issuer's Token Status List (format: sdk/statuslist.py)."""

from __future__ import annotations

import time
from collections.abc import Mapping

import jwt

from issuers.keyring import Signer
from sdk.keys import b64u_encode
from sdk.statuslist import STATUS_LIST_TYPE, encode_lst, pack

BITS = 2


def sign_status_list(
    signer: Signer,
    statuses: Mapping[int, int],
    *,
    size: int,
    uri: str,
    ttl: int,
    validity: int,
    now: float | None = None,
) -> str:
    """A ``statuslist+jwt`` of *size* entries: every index valid (0) unless *statuses* says otherwise."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": signer.issuer,
        "sub": uri,
        "iat": issued,
        "exp": issued + validity,
        "ttl": ttl,
        "status_list": {"bits": BITS, "lst": encode_lst(pack(size, statuses, BITS))},
    }
    return jwt.encode(claims, signer.private_key, algorithm=signer.alg_name,  # type: ignore[arg-type]
                      headers={"typ": STATUS_LIST_TYPE, "kid": b64u_encode(signer.kid)})
