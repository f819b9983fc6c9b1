"""The answer to every verification: a value, never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdk.claims import subject_to_text
from sdk.reasons import DESCRIPTIONS, Reason


@dataclass(slots=True)
class Result:
    """Outcome of one verification (treat as immutable)."""

    accepted: bool
    reason: Reason
    detail: str = ""
    kind: str | None = None
    #: The pseudonymous subject as carried in the code; ``subject`` is its printable form.
    subject_id: bytes | None = None
    issued_at: int | None = None
    expires_at: int | None = None
    kid: str | None = None
    issuer: str | None = None
    code_id: str | None = None
    scene: str | None = None
    #: For certificate codes: the certificate, its type, its holder and only the disclosed fields.
    cert_id: str | None = None
    cert_type: str | None = None
    holder: str | None = None
    fields: dict[str, Any] | None = None
    #: Age in seconds of the status list consulted (or found too old).
    status_age: int | None = None
    #: For ride codes: the card type, the per-ride fare limit in cents, the credential's id (hex)
    #: and when its authorisation expires (the subject is then the pseudonymous transit account).
    card_type: str | None = None
    fare_limit: int | None = None
    credential_id: str | None = None
    credential_expires_at: int | None = None
    #: For a visitor's code: the federated city that issued it (None: this city's own).
    home_city: str | None = None
    #: For venue codes: the venue the code was posted for (not in ``to_dict``: the venue service reads it).
    venue_id: str | None = None

    @property
    def subject(self) -> str | None:
        """The pseudonymous id (text form), computed on demand: a gate that only opens need not."""
        return subject_to_text(self.subject_id) if self.subject_id is not None else None

    @property
    def message(self) -> str:
        """A short text a gate can show."""
        return DESCRIPTIONS[self.reason]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "reason": self.reason.value,
            "message": self.message,
            "detail": self.detail,
            "kind": self.kind,
            "subject": self.subject,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "kid": self.kid,
            "issuer": self.issuer,
            "code_id": self.code_id,
            "scene": self.scene,
            "cert_id": self.cert_id,
            "cert_type": self.cert_type,
            "holder": self.holder,
            "fields": self.fields,
            "status_age": self.status_age,
            "card_type": self.card_type,
            "fare_limit": self.fare_limit,
            "credential_id": self.credential_id,
            "credential_expires_at": self.credential_expires_at,
            "home_city": self.home_city,
        }


def refused(reason: Reason, detail: str = "", **fields: Any) -> Result:
    return Result(accepted=False, reason=reason, detail=detail, **fields)


_VERDICT = ("accepted", "reason", "detail")


def refused_like(result: Result, reason: Reason, detail: str = "") -> Result:
    """A refusal that keeps everything *result* read of the code (kind, subject, times, ...)."""
    return refused(reason, detail, **{name: getattr(result, name) for name in Result.__slots__
                                      if name not in _VERDICT})
