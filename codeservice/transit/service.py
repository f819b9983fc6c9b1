"""Transit: accounts, phones' device keys and their ride credentials, operators, and gate records.

- A resident's **transit account** has a pseudonym of its own, a card type and a per-ride fare limit. A ride
  code names only that pseudonym; an identity code shown at a gate names the resident's pid, which the service
  replaces by the transit account before it stores the record, so operators never read a pid.
- A phone registers a **device key** (P-256, made and kept by the browser) by signing a challenge with it;
  the service answers with a **ride credential** (issuers/rides.py) that the phone renews while online.
- Revoking a device, or freezing the resident's identity (lost phone), shows in the transit platform's
  status list (revoked, suspended), which gates refresh.
- **Gate records** are stored exactly once: the record id is the primary key, and a record delivered again
  is acknowledged as a duplicate.
- **A code is charged once**, whatever record id, gate, batch or operator brings it back: a record keeps the key
  of the code it carries (``code_key``), unique among the records that are not copies, and a record whose code
  another record carried first is stored as a duplicate of it (``duplicate_of``): held, so that the gate marks it
  sent, shown to the operator, and never charged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import any_, bindparam, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codeservice.certificates.service import covering_size
from codeservice.clients.models import ApiClient
from codeservice.identity.models import Resident
from codeservice.transit.fares import FareError, FareRules, load_rules
from codeservice.transit.models import GateRecord, Operator, RideDevice, TransitAccount
from codeservice.transit.partitions import ensure_days
from issuers.keyring import IssuerInfo, Keyring
from issuers.rides import compressed_point, issue_credential
from issuers.statuslist import sign_status_list
from sdk.citytime import age_on, service_day
from sdk.claims import CARD_TYPE_IDS, KIND_IDS, subject_from_text, subject_to_text
from sdk.keys import b64u_decode, b64u_encode, verify_es256
from sdk.reasons import Reason
from sdk.statuslist import INVALID, SUSPENDED
from sdk.verifier import Verifier
from verifiers.scenes import SCENES

TRANSIT_PLATFORM = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))
#: What the phone signs to prove it holds the device key: this prefix, then the challenge bytes.
PROOF_PREFIX = b"citycode-ride-device:"
MAX_DEVICES = 3
MAX_BATCH = 500
MAX_CODE_CHARS = 2048
_HEX = re.compile(r"^[0-9a-f]+$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
OPERATOR_ID = re.compile(r"[a-z][a-z0-9-]{1,63}")
REASONS = frozenset(r.value for r in Reason)


class TransitError(ValueError):
    """A request the transit platform cannot carry out; ``reason`` is stable, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransitNotFound(TransitError):
    pass


class RecordError(ValueError):
    """A gate record the service refuses for good (it is answered in ``rejected``, not as an HTTP error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- accounts ------------------------------------------------------------------------------------------
def card_type_for(resident: Resident, today: dt.date) -> str:
    """The default card type: elderly from 60 (by the birth date the identity platform verified), else adult.
    Student and disability cards are set by an administrator (``citycode transit account``)."""

    return "elderly" if resident.birth_date is not None and age_on(resident.birth_date, today) >= 60 else "adult"


def ensure_account(session: Session, pid: str, *, fare_limit: int, today: dt.date) -> TransitAccount:
    account = session.scalars(select(TransitAccount).where(TransitAccount.resident == pid)).one_or_none()
    if account is not None:
        return account
    resident = session.scalars(select(Resident).where(Resident.pid == pid)).one_or_none()
    if resident is None:
        raise TransitNotFound("not_found", f"no resident {pid!r}")
    account = TransitAccount(account=subject_to_text(os.urandom(10)), resident=pid,
                             card_type=card_type_for(resident, today), fare_limit=fare_limit)
    try:
        with session.begin_nested():
            session.add(account)
            session.flush()
    except IntegrityError:  # made concurrently
        account = session.scalars(select(TransitAccount).where(TransitAccount.resident == pid)).one()
    return account


def set_account(session: Session, pid: str, *, card_type: str | None, fare_limit: int | None,
                default_limit: int, today: dt.date) -> TransitAccount:
    account = ensure_account(session, pid, fare_limit=default_limit, today=today)
    if card_type is not None:
        if card_type not in CARD_TYPE_IDS:
            raise ValueError(f"card type must be one of {', '.join(CARD_TYPE_IDS)}")
        account.card_type = card_type
    if fare_limit is not None:
        if type(fare_limit) is not int or not 0 <= fare_limit <= 1_000_000:
            raise ValueError("fare limit: whole cents from 0 to 1000000")
        account.fare_limit = fare_limit
    return account


def account_json(account: TransitAccount) -> dict[str, Any]:
    return {"account": account.account, "card_type": account.card_type, "fare_limit": account.fare_limit}


# -- devices and credentials -------------------------------------------------------------------------
def parse_device_key(text: Any) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from base64url of its 65-byte (WebCrypto 'raw') or 33-byte (compressed) point."""
    if not isinstance(text, str) or not 40 <= len(text) <= 100:
        raise TransitError("invalid_key", "public_key: base64url of a P-256 point")
    try:
        point = b64u_decode(text)
        if len(point) not in (33, 65):
            raise ValueError("length")
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise TransitError("invalid_key", "public_key is not a P-256 point") from None


def new_challenge() -> bytes:
    return secrets.token_bytes(32)


def check_proof(key: ec.EllipticCurvePublicKey, challenge: bytes, proof: Any) -> None:
    """The phone signed ``PROOF_PREFIX + challenge`` with the key (raw r||s, base64url)."""
    try:
        signature = b64u_decode(proof) if isinstance(proof, str) and len(proof) <= 100 else b""
    except ValueError:
        signature = b""
    if not verify_es256(key, signature, PROOF_PREFIX + challenge):
        raise TransitError("bad_proof", "proof does not verify with this key and the current challenge")


def _allocate_index(session: Session, size: int) -> int:
    used = set(session.scalars(select(RideDevice.status_index)))
    if len(used) >= size * 0.9:
        raise TransitError("status_list_full", "the transit status list is full; raise CITYCODE_STATUS_LIST_SIZE")
    while True:
        index = secrets.randbelow(size)
        if index not in used:
            return index


@dataclass(frozen=True)
class Credential:
    device_id: str
    credential: bytes
    issued_at: int
    expires_at: int
    validity: int

    def to_json(self, refresh: int) -> dict[str, Any]:
        return {"device_id": self.device_id, "credential": b64u_encode(self.credential), "issued_at": self.issued_at,
                "expires_at": self.expires_at, "code_validity": self.validity, "refresh_seconds": refresh}


def _credential(keyring: Keyring, account: TransitAccount, device: RideDevice, *, lifetime: int, validity: int,
                now: float) -> Credential:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64u_decode(device.public_key))
    cred = issue_credential(
        keyring.signer(TRANSIT_PLATFORM.id), account=subject_from_text(account.account), device_key=key,
        card_type=account.card_type, fare_limit=account.fare_limit, status_index=device.status_index,
        validity=validity, lifetime=lifetime, credential_id=bytes.fromhex(device.id), now=now,
    )
    device.authorised_until = dt.datetime.fromtimestamp(int(now) + lifetime, dt.UTC)
    return Credential(device.id, cred, int(now), int(now) + lifetime, validity)


def register_device(
    session: Session, keyring: Keyring, pid: str, key: ec.EllipticCurvePublicKey, *, label: str,
    fare_limit: int, lifetime: int, validity: int, status_list_size: int, now: float,
) -> Credential:
    """Register a proven device key for the resident and certify it (the proof is checked by the caller)."""
    resident = session.scalars(select(Resident).where(Resident.pid == pid)).one_or_none()
    if resident is None:
        raise TransitNotFound("not_found", "no such resident")
    if resident.frozen:
        raise TransitError("frozen", "this identity is frozen; contact the identity office")
    today = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=8))).date()
    account = ensure_account(session, pid, fare_limit=fare_limit, today=today)
    point = b64u_encode(compressed_point(key))
    existing = session.scalars(select(RideDevice).where(RideDevice.public_key == point)).one_or_none()
    if existing is not None:
        if existing.account != account.account or existing.status != "valid":
            raise TransitError("key_in_use", "this device key cannot be registered again")
        return _credential(keyring, account, existing, lifetime=lifetime, validity=validity, now=now)
    active = session.scalars(select(RideDevice).where(RideDevice.account == account.account,
                                                      RideDevice.status == "valid")).all()
    if len(active) >= MAX_DEVICES:
        raise TransitError("too_many_devices", f"at most {MAX_DEVICES} phones; remove one first")
    for _ in range(5):
        device = RideDevice(id=secrets.token_hex(8), account=account.account, public_key=point,
                            status_index=_allocate_index(session, status_list_size), status="valid",
                            label=label[:100], registered_at=dt.datetime.fromtimestamp(now, dt.UTC),
                            authorised_until=dt.datetime.fromtimestamp(now, dt.UTC))
        try:
            with session.begin_nested():
                session.add(device)
                session.flush()
            break
        except IntegrityError:
            continue  # a concurrent registration took the id or the index
    else:
        raise TransitError("busy", "could not register the device; try again")
    return _credential(keyring, account, device, lifetime=lifetime, validity=validity, now=now)


def device_of(session: Session, pid: str, device_id: str) -> tuple[TransitAccount, RideDevice]:
    """The resident's own device (someone else's answers exactly like an unknown one)."""
    account = session.scalars(select(TransitAccount).where(TransitAccount.resident == pid)).one_or_none()
    known = isinstance(device_id, str) and len(device_id) <= 32 and _HEX.fullmatch(device_id)
    device = session.get(RideDevice, device_id) if known else None
    if account is None or device is None or device.account != account.account:
        raise TransitNotFound("not_found", "no such device")
    return account, device


def renew_credential(session: Session, keyring: Keyring, pid: str, device_id: str, *, lifetime: int,
                     validity: int, now: float) -> Credential:
    account, device = device_of(session, pid, device_id)
    if device.status != "valid":
        raise TransitError("device_revoked", "this device was removed; register it anew")
    return _credential(keyring, account, device, lifetime=lifetime, validity=validity, now=now)


def revoke_device(session: Session, pid: str, device_id: str) -> RideDevice:
    _account, device = device_of(session, pid, device_id)
    device.status = "revoked"
    return device


def devices_json(session: Session, account: TransitAccount) -> list[dict[str, Any]]:
    devices = session.scalars(select(RideDevice).where(RideDevice.account == account.account)
                              .order_by(RideDevice.registered_at)).all()
    return [{"id": d.id, "label": d.label, "status": d.status, "registered_at": _utc_text(d.registered_at),
             "authorised_until": _utc_text(d.authorised_until)} for d in devices]


def _utc_text(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with its offset (SQLite gives back naive datetimes, PostgreSQL the session's zone)."""
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def transit_status_list(session: Session, keyring: Keyring, *, size: int, uri: str, ttl: int, validity: int,
                        now: float | None = None) -> str:
    """The platform's status list: a removed device is invalid; every device of a frozen identity suspended."""
    statuses: dict[int, int] = {}
    rows = session.execute(
        select(RideDevice.status_index, RideDevice.status, Resident.frozen)
        .join(TransitAccount, TransitAccount.account == RideDevice.account)
        .join(Resident, Resident.pid == TransitAccount.resident)
        .where((RideDevice.status != "valid") | Resident.frozen)
    )
    for index, status, frozen in rows:
        statuses[index] = INVALID if status == "revoked" else SUSPENDED if frozen else 0

    size = covering_size(size, session.scalar(select(func.max(RideDevice.status_index))))
    return sign_status_list(keyring.signer(TRANSIT_PLATFORM.id), statuses, size=size, uri=uri, ttl=ttl,
                            validity=validity, now=now)


# -- operators ---------------------------------------------------------------------------------------
_RULES_CACHE: dict[tuple[str, str], FareRules] = {}


def add_operator(session: Session, operator_id: str, name: str, kind: str, fares: Any,
                 discounts: Any) -> Operator:
    if not isinstance(operator_id, str) or not OPERATOR_ID.fullmatch(operator_id):
        raise TransitError("invalid_operator", "operator id: 2 to 64 of a-z, 0-9 and '-', starting with a letter")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 200:
        raise TransitError("invalid_operator", "operator name: 1 to 200 characters")
    try:
        load_rules(kind, fares, discounts)
    except FareError as exc:
        raise TransitError("invalid_fares", str(exc)) from None
    if session.get(Operator, operator_id) is not None:
        raise TransitError("exists", f"operator {operator_id!r} exists")
    operator = Operator(id=operator_id, name=name.strip(), kind=kind, fares=fares, discounts=discounts)
    session.add(operator)
    session.flush()
    return operator


def rules_of(operator: Operator) -> FareRules:
    import json

    key = (operator.id, json.dumps([operator.kind, operator.fares, operator.discounts], sort_keys=True))
    rules = _RULES_CACHE.get(key)
    if rules is None:
        rules = load_rules(operator.kind, operator.fares, operator.discounts)
        if len(_RULES_CACHE) > 256:
            _RULES_CACHE.clear()
        _RULES_CACHE[key] = rules
    return rules


def operator_json(operator: Operator) -> dict[str, Any]:
    return {"id": operator.id, "name": operator.name, "kind": operator.kind, "fares": operator.fares,
            "discounts": operator.discounts}


# -- gate records -----------------------------------------------------------------------------------
#: Rounds of insertion a batch may take when concurrent uploads bring the same codes (one is enough alone).
_ROUNDS = 4


@dataclass
class Ingested:
    stored: list[str]
    duplicates: list[str]
    rejected: list[dict[str, str]]
    #: The records of ``duplicates`` that are copies of a code another record carried first: ``record_id`` and
    #: ``duplicate_of``, the record that is charged (None when it is another operator's).
    code_duplicates: list[dict[str, str | None]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "duplicates": self.duplicates, "rejected": self.rejected,
                "code_duplicates": self.code_duplicates}


def code_key(kind: str, code_id: str) -> str:
    """What makes a code one code, whatever the bytes it was written in: SHA-256 of its kind and its code id,
    for a ride code the credential id and the nonce (``sdk.ride.replay_id``), for an identity code its cti.

    Both are signed (the platform signs the credential id, the phone the nonce, the identity office the cti) and
    checked against the code before a record is stored, so a gate cannot give one code a second key: not by a new
    record id, nor by writing the code again in other CBOR or base45, nor by another signature over the same
    payload (an ECDSA signature can be turned into a second valid one without the key)."""
    return hashlib.sha256(f"citycode-code:{kind}:{code_id}".encode()).hexdigest()


def _optional_text(record: Mapping[str, Any], name: str, limit: int = 64) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or "\x00" in value:
        raise RecordError("invalid_record", f"{name}: text of 1 to {limit} characters or null")
    return value


def _record_row(record: Any, device: ApiClient, now: float) -> dict[str, Any]:
    """Validate one record as a gate sends it (sdk/gate.py) into a row; unknown members are ignored."""
    if not isinstance(record, Mapping):
        raise RecordError("invalid_record", "a record is an object")
    if record.get("operator") != device.operator_id:
        raise RecordError("wrong_operator", "a gate uploads only its own operator's records")
    gate_id = record.get("gate_id")
    if not isinstance(gate_id, str) or not _ID.fullmatch(gate_id):
        raise RecordError("invalid_record", "gate_id: 1 to 64 letters, digits, '.', '_' or '-'")
    at: Any = record.get("at")
    if type(at) not in (int, float) or not now - 90 * 86400 <= at <= now + 86400:
        raise RecordError("invalid_record", "at: seconds since the epoch, within the last 90 days")
    accepted, online = record.get("accepted"), record.get("online", False)
    if type(accepted) is not bool or type(online) is not bool:
        raise RecordError("invalid_record", "accepted and online must be true or false")
    reason = record.get("reason")
    if not isinstance(reason, str) or reason not in REASONS or (reason == "ok") != accepted:
        raise RecordError("invalid_record", "reason: a reason code, 'ok' exactly when accepted")
    direction = record.get("direction")
    if direction not in (None, "in", "out"):
        raise RecordError("invalid_record", "direction: in, out or null")
    kind = record.get("kind")
    if kind is not None and (not isinstance(kind, str) or kind not in KIND_IDS):
        raise RecordError("invalid_record", "kind: a kind of code or null")
    card_type = record.get("card_type")
    if card_type is not None and (not isinstance(card_type, str) or card_type not in CARD_TYPE_IDS):
        raise RecordError("invalid_record", "card_type: a card type or null")
    fare_limit = record.get("fare_limit")
    if fare_limit is not None and (type(fare_limit) is not int or not 0 <= fare_limit <= 10_000_000):
        raise RecordError("invalid_record", "fare_limit: whole cents or null")
    for name, limit in (("credential_id", 32), ("code_id", 64)):
        value = _optional_text(record, name, limit)
        if value is not None and not _HEX.fullmatch(value):
            raise RecordError("invalid_record", f"{name}: lowercase hex or null")
    code = record.get("code")
    if code is not None and (not isinstance(code, str) or not 0 < len(code) <= MAX_CODE_CHARS):
        raise RecordError("invalid_record", f"code: the scanned text, at most {MAX_CODE_CHARS} characters, or null")
    if accepted and kind in PROVEN_KINDS and code is None:
        raise RecordError("unproven", "an accepted ride, identity or printed-card scan carries the code that was shown")
    moment = dt.datetime.fromtimestamp(float(at), dt.UTC)
    return {
        "record_id": record["record_id"], "device_id": device.id, "operator_id": device.operator_id,
        "gate_id": gate_id, "scene": _optional_text(record, "scene") or "",
        "station": _optional_text(record, "station"),
        "line": _optional_text(record, "line"), "direction": direction, "at": moment,
        "service_day": dt.date.fromisoformat(service_day(float(at))), "accepted": accepted, "reason": reason,
        "kind": kind, "account": _optional_text(record, "account", 32), "card_type": card_type,
        "fare_limit": fare_limit, "credential_id": record.get("credential_id"), "code_id": record.get("code_id"),
        "entitlement": _optional_text(record, "entitlement"), "online": online,
        "received_at": dt.datetime.fromtimestamp(now, dt.UTC),
        "evidence": code if accepted and kind in PROVEN_KINDS else None,
        "code_key": None, "duplicate_of": None,  # set once the code has proven the record
    }


#: The kinds whose accepted scans carry the code that was shown, proven by the service before anyone is charged:
#: ride codes, identity codes and printed cards (both name the resident, billed to the resident's account).
PROVEN_KINDS = ("ride", "id", "card")


def _charged_id(row: Mapping[str, Any]) -> str:
    """What is charged once: a code's id; for a printed card, which is the same code every day, its id and the
    scene's card window the scan fell in (a bus takes a card once a minute), so each ride is charged once and
    a gate's resend of one ride is still a copy."""
    if row["kind"] != "card":
        return str(row["code_id"])
    scene = SCENES.get(row["scene"])
    window = scene.card_window if scene is not None else 60
    return f"{row['code_id']}:{int(row['at'].timestamp()) // window}"


def check_evidence(verifier: Verifier, row: Mapping[str, Any]) -> str | None:
    """Why an accepted ride or identity scan is not proven by the code it carries, or None when it is.

    The code's signatures (for a ride code the platform's and the phone's) must verify with the keys the service
    ever trusted, its times must fit the scan's time, and it must name what the record says: the account, the
    code id, and for a ride its credential, card type and fare limit. A gate's key alone cannot charge anyone.
    """
    code = row["evidence"]
    if code is None:
        return None
    result = verifier.evidence(code, at=row["at"].timestamp())
    if not result.accepted:
        return f"the code does not prove the scan ({result.reason.value}: {result.detail})"[:200]
    claimed = (row["kind"], row["account"], row["code_id"])
    if (result.kind, result.subject, result.code_id) != claimed:
        return "the code names another kind, account or code id than the record"
    if result.kind == "ride" and (result.credential_id, result.card_type, result.fare_limit) != (
            row["credential_id"], row["card_type"], row["fare_limit"]):
        return "the code names another credential, card type or fare limit than the record"
    return None


def ingest_records(session: Session, device: ApiClient, records: list[Any], now: float,
                   evidence: Verifier) -> Ingested:
    """Store each record not stored before; answer what is now held and what is refused for good.

    *evidence* checks the code an accepted ride or identity scan carries (``check_evidence``). A record whose
    code is held already under another record id is stored as a duplicate of that record (``_store``) and
    answered in ``duplicates`` and ``code_duplicates``."""
    if device.role != "device" or device.operator_id is None:
        raise TransitError("forbidden", "only an operator's gates upload records")
    if not isinstance(records, list) or len(records) > MAX_BATCH:
        raise TransitError("invalid_body", f"records: a list of at most {MAX_BATCH}")
    rows: dict[str, dict[str, Any]] = {}
    rejected: list[dict[str, str]] = []
    for record in records:
        record_id = record.get("record_id") if isinstance(record, Mapping) else None
        if not isinstance(record_id, str) or len(record_id) != 32 or not _HEX.fullmatch(record_id):
            rejected.append({"record_id": str(record_id)[:64],
                             "error": "invalid_record: record_id: 32 lowercase hex characters"})
            continue
        try:
            rows[record_id] = _record_row(record, device, now)
        except RecordError as exc:
            rejected.append({"record_id": record_id, "error": f"{exc.reason}: {exc}"})
    ensure_days(session, {row["service_day"] for row in rows.values()})  # a day's partitions (PostgreSQL)
    held = _held(session, list(rows))
    for record_id in [r for r in rows if r not in held]:  # a resent record was proven when it was stored
        row = rows[record_id]
        problem = check_evidence(evidence, row)
        if problem is not None:
            rejected.append({"record_id": record_id, "error": f"unproven: {problem}"})
            del rows[record_id]
        elif row["evidence"] is not None:
            row["code_key"] = code_key(row["kind"], _charged_id(row))
    _resolve_identity_codes(session, rows.values())
    stored = _store(session, [row for record_id, row in rows.items() if record_id not in held], held)
    duplicates, copies = [], {}
    for record_id in rows:
        held_by, duplicate_of = held.get(record_id, (device.id, rows[record_id]["duplicate_of"]))
        if held_by != device.id:
            rejected.append({"record_id": record_id, "error": "record_id_conflict: another gate's record has this id"})
            continue
        if duplicate_of is not None:
            copies[record_id] = duplicate_of
        if record_id not in stored or duplicate_of is not None:
            duplicates.append(record_id)
    return Ingested(stored=[r for r in rows if r in stored and r not in copies], duplicates=duplicates,
                    rejected=rejected, code_duplicates=_name_originals(session, device, copies))


def _held(session: Session, record_ids: list[str]) -> dict[str, tuple[int, str | None]]:
    """The records of these ids that are stored: by which device, and the record they are a copy of, if any."""
    if not record_ids:
        return {}
    found = session.execute(select(GateRecord.record_id, GateRecord.device_id, GateRecord.duplicate_of)
                            .where(_among(session, GateRecord.record_id, record_ids)))
    return {record_id: (device_id, duplicate_of) for record_id, device_id, duplicate_of in found}


def _store(session: Session, fresh: list[dict[str, Any]], held: dict[str, tuple[int, str | None]]) -> set[str]:
    """Insert the fresh rows; the ids inserted (copies included). *held* gains the ids another request stored.

    A row whose code key a stored record has is made a copy of that record. Of the rows of one batch with the
    same key the first goes in as the original and the others in the next round, as copies of it. A row that
    loses its key to a concurrent upload (the unique index, on PostgreSQL after that upload commits) comes back
    in the next round too, as a copy; a row whose id another upload stored is held, as the record id's conflict
    was before."""
    stored: set[str] = set()
    pending = fresh
    for _ in range(_ROUNDS):
        if not pending:
            return stored
        keys = {row["code_key"] for row in pending if row["code_key"] is not None}
        originals = dict(session.execute(select(GateRecord.code_key, GateRecord.record_id).where(
            _among(session, GateRecord.code_key, sorted(keys)), GateRecord.duplicate_of.is_(None))).all()) \
            if keys else {}
        batch, later, claimed = [], [], set()
        for row in pending:
            key = row["code_key"]
            if key in originals:
                row["duplicate_of"] = originals[key]
            elif key is not None and key in claimed:
                later.append(row)
                continue
            elif key is not None:
                claimed.add(key)
            batch.append(row)
        inserted = _insert_new(session, batch)
        stored |= inserted
        missed = [row for row in batch if row["record_id"] not in inserted]
        taken = _held(session, [row["record_id"] for row in missed])
        held.update(taken)
        lost = [row for row in missed if row["record_id"] not in taken]  # its code went in concurrently
        for row in lost:
            row["duplicate_of"] = None
        pending = later + lost
    if pending:
        raise TransitError("busy", "the same codes are being uploaded concurrently; send the records again")
    return stored


def _name_originals(session: Session, device: ApiClient, copies: dict[str, str]) -> list[dict[str, str | None]]:
    """``code_duplicates``: each copy with the record that is charged, named only to that record's operator."""
    if not copies:
        return []
    owners = dict(session.execute(select(GateRecord.record_id, GateRecord.operator_id)
                                  .where(GateRecord.record_id.in_(set(copies.values())))).all())
    return [{"record_id": record_id, "duplicate_of": original if owners.get(original) == device.operator_id else None}
            for record_id, original in copies.items()]


def _dialect(session: Session) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _among(session: Session, column: Any, values: list[str]) -> Any:
    """``column IN values``: on PostgreSQL ``column = ANY(:array)``, one bound array, so that the statement's
    text is the same for every batch (psycopg prepares it once instead of parsing a hundred placeholders each
    time); elsewhere an expanding IN."""
    if _dialect(session) == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


_INSERT_NEW: dict[str, Any] = {}


def _json_insert() -> Any:
    """PostgreSQL: every row of a batch in one ``INSERT ... SELECT FROM json_populate_recordset(:rows)``, the batch
    bound as one JSON text (a statement whose text does not depend on the batch size; the driver sends one
    parameter instead of dumping an array a column, which took a twentieth of an upload), skipping conflicts on
    any unique index, returning the ids inserted."""
    table: Any = GateRecord.__table__
    names = ", ".join(column.name for column in table.columns)
    return text(f"INSERT INTO {table.name} ({names}) SELECT {names} "  # noqa: S608
                f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json)) "
                "ON CONFLICT DO NOTHING RETURNING record_id")


def _json_value(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"not a gate record value: {type(value).__name__}")


def _insert_new(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the rows whose record id, and whose code key (of a record that is not a copy), are not held yet;
    the ids actually inserted.

    One statement for every batch size, so that its compiled form is cached instead of built per batch: on
    PostgreSQL the batch as one JSON parameter (``_json_insert``), elsewhere the rows as parameters (SQLAlchemy
    batches them into multi-row INSERTs with RETURNING). Its ``ON CONFLICT DO NOTHING`` names no column: it
    skips a row that conflicts on either unique index."""
    if not rows:
        return set()
    dialect = _dialect(session)
    if dialect == "postgresql":
        if "json" not in _INSERT_NEW:
            _INSERT_NEW["json"] = _json_insert()
        rows_json = json.dumps(rows, default=_json_value, ensure_ascii=False, separators=(",", ":"))
        return set(session.scalars(_INSERT_NEW["json"], {"rows": rows_json}))
    statement = _INSERT_NEW.get(dialect)
    if statement is None:
        table: Any = GateRecord.__table__
        insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        statement = _INSERT_NEW[dialect] = insert.on_conflict_do_nothing().returning(table.c.record_id)
    return set(session.scalars(statement, rows))


def _resolve_identity_codes(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """An identity code names the resident's pid: bill the resident's transit account instead, and keep
    the pid out of the operator's records."""
    id_rows = [row for row in rows if row["kind"] in ("id", "card") and row["account"] is not None]
    if not id_rows:
        return
    accounts = {a.resident: a for a in session.scalars(
        select(TransitAccount).where(TransitAccount.resident.in_({row["account"] for row in id_rows})))}
    for row in id_rows:
        account = accounts.get(row["account"])
        row["account"] = account.account if account is not None else None
        row["card_type"] = account.card_type if account is not None else None
        row["fare_limit"] = account.fare_limit if account is not None else None
