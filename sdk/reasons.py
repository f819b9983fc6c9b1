"""Stable reason codes a gate shows and logs. The values never change meaning."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a code was accepted or refused. ``str`` values are the wire form."""

    OK = "ok"
    #: Not one of our codes at all (a web address, another vendor's QR, random text).
    NOT_A_CITYCODE = "not_a_citycode"
    #: Ours (it carries our prefix) but damaged or not built to the specification.
    MALFORMED = "malformed"
    #: An image in which no QR code could be found, or bytes that are not an image.
    NO_CODE_FOUND = "no_code_found"
    #: The code names an algorithm other than the one its key is for (``none``, HMAC, ...).
    UNSUPPORTED_ALG = "unsupported_alg"
    #: The key id is not in the trust list, or the key was not valid when the code was made.
    UNKNOWN_KEY = "unknown_key"
    #: The key is trusted, but not for this kind of code (or not to speak for the city the code claims).
    UNTRUSTED_ISSUER = "untrusted_issuer"
    #: The signature does not verify: the code was altered or forged.
    BAD_SIGNATURE = "bad_signature"
    #: The code's expiry lies in the past (beyond the clock leeway).
    EXPIRED = "expired"
    #: The code's issue time lies in the future (beyond the clock leeway).
    NOT_YET_VALID = "not_yet_valid"
    #: A genuine code of a kind this scene does not accept.
    WRONG_KIND = "wrong_kind"
    #: A single-use scene has already accepted this code.
    REPLAYED = "replayed"
    #: The gate's trust list has expired; it must be refreshed before anything is accepted.
    TRUST_LIST_EXPIRED = "trust_list_expired"
    #: The issuer revoked the certificate (status list: invalid); final.
    REVOKED = "revoked"
    #: The issuer suspended the certificate for now (status list: suspended), or, online, the
    #: resident froze their identity (lost phone); both can be lifted.
    SUSPENDED = "suspended"
    #: The gate's status list is older than the scene allows (or expired): refresh before trusting it.
    STATUS_STALE = "status_stale"
    #: No status list for the issuer, or the code points outside it: status cannot be known.
    STATUS_UNKNOWN = "status_unknown"
    #: A genuine certificate outside its validity dates.
    CERTIFICATE_EXPIRED = "certificate_expired"
    #: Genuine, but it does not show what the scene needs (a certificate type or a disclosed predicate).
    NOT_ENTITLED = "not_entitled"
    #: A single-use scene could not reach its replay guard; refused rather than risk a double use.
    REPLAY_GUARD_UNAVAILABLE = "replay_guard_unavailable"
    #: A ride code made longer ago than its validity (an old screenshot, a phone clock far behind).
    CODE_STALE = "code_stale"
    #: The ride credential's authorisation has expired: the phone must go online once to renew it.
    CREDENTIAL_EXPIRED = "credential_expired"
    #: A genuine ride code of a card type this scene does not take.
    CARD_NOT_ACCEPTED = "card_not_accepted"
    #: A genuine printed card (kind ``card``) at a scene that does not take printed cards.
    PRINTED_CARD_NOT_ACCEPTED = "printed_card_not_accepted"
    #: A printed card at a scene that takes one only after the clerk has checked the identity card.
    ID_CHECK_REQUIRED = "id_check_required"
    #: The fare at this gate is above the per-ride limit the credential allows.
    FARE_LIMIT_EXCEEDED = "fare_limit_exceeded"
    #: Anti-passback: a second entry without an exit (metro), or a second entry the same day (scenic site).
    PASSBACK = "passback"
    #: The site has admitted its capacity for the day.
    CAPACITY_REACHED = "capacity_reached"
    #: A genuine code of another city that this city does not accept: not federated (known but with no kinds),
    #: federated for other kinds or scenes, or past the federation's end (docs/federation.md); or a code whose
    #: key is in no list the gate holds and whose ``iss`` names such a city (refused either way).
    CITY_NOT_ACCEPTED = "city_not_accepted"


DESCRIPTIONS: dict[Reason, str] = {
    Reason.OK: "accepted",
    Reason.NOT_A_CITYCODE: "not a citycode",
    Reason.MALFORMED: "damaged or malformed citycode",
    Reason.NO_CODE_FOUND: "no QR code found in the image",
    Reason.UNSUPPORTED_ALG: "signature algorithm not accepted for this key",
    Reason.UNKNOWN_KEY: "signed by a key that is not trusted",
    Reason.UNTRUSTED_ISSUER: "issuer not trusted for this kind of code",
    Reason.BAD_SIGNATURE: "signature does not verify",
    Reason.EXPIRED: "code has expired",
    Reason.NOT_YET_VALID: "code is not valid yet",
    Reason.WRONG_KIND: "this kind of code is not accepted here",
    Reason.REPLAYED: "code already used",
    Reason.TRUST_LIST_EXPIRED: "trust list expired; refresh it",
    Reason.REPLAY_GUARD_UNAVAILABLE: "replay guard unavailable; try again",
    Reason.REVOKED: "revoked",
    Reason.SUSPENDED: "suspended",
    Reason.STATUS_STALE: "revocation status too old; connect to refresh",
    Reason.STATUS_UNKNOWN: "revocation status unknown",
    Reason.CERTIFICATE_EXPIRED: "certificate not valid on this date",
    Reason.NOT_ENTITLED: "does not show what this place requires",
    Reason.CODE_STALE: "code too old; show the live code",
    Reason.CREDENTIAL_EXPIRED: "ride authorisation expired; open the app online once",
    Reason.CARD_NOT_ACCEPTED: "this card type is not accepted here",
    Reason.PRINTED_CARD_NOT_ACCEPTED: "printed cards are not accepted here",
    Reason.ID_CHECK_REQUIRED: "check the identity card before accepting a printed card",
    Reason.FARE_LIMIT_EXCEEDED: "fare above this card's per-ride limit",
    Reason.PASSBACK: "already inside; exit first",
    Reason.CAPACITY_REACHED: "full for today",
    Reason.CITY_NOT_ACCEPTED: "this city's codes are not accepted here",
}
