"""Signing certificate show codes: the certificate's metadata and only the fields its holder chose.

A show code is short-lived and signed at the moment of showing by the issuing department's key,
so it carries no trace of the fields left out (no digests, no counts): a verifier learns nothing
about them. Format: docs/certificates.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from issuers.codes import issue_code
from issuers.keyring import Signer
from sdk.claims import (
    CERT_FIELDS,
    CERT_HOLDER,
    CERT_ID,
    CERT_STATUS_INDEX,
    CERT_TYPE,
    CERT_VALID_FROM,
    CERT_VALID_UNTIL,
    CLAIM_CERT,
    FieldValue,
    subject_from_text,
)


def holder_to_wire(holder: str) -> bytes | str:
    """A resident's pseudonymous id travels as its 10 bytes; a company's credit code as text."""
    try:
        return subject_from_text(holder)
    except ValueError:
        return holder


def issue_show_code(
    signer: Signer,
    *,
    cert_id: str,
    type_code: str,
    holder: str,
    valid_from: int,
    valid_until: int,
    status_index: int,
    disclosed: Mapping[str, FieldValue],
    lifetime: int,
    now: float | None = None,
) -> str:
    body: dict[int, Any] = {
        CERT_ID: cert_id,
        CERT_TYPE: type_code,
        CERT_HOLDER: holder_to_wire(holder),
        CERT_VALID_FROM: valid_from,
        CERT_VALID_UNTIL: valid_until,
        CERT_STATUS_INDEX: status_index,
        CERT_FIELDS: dict(disclosed),
    }
    return issue_code(signer, "cert", subject=None, lifetime=lifetime, now=now, extra={CLAIM_CERT: body})
