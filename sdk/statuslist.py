"""Token Status List (draft-ietf-oauth-status-list): compact revocation and suspension status.

A list is a byte array of 1, 2, 4 or 8 bits a token, least significant bits first within each byte,
compressed with ZLIB (RFC 1950), base64url-encoded in ``status_list.lst`` of a JWT whose header
``typ`` is ``statuslist+jwt``. Statuses: 0 valid, 1 invalid (revoked), 2 suspended.

citycode signs each issuer's list with that issuer's key from the trust list (header ``kid`` is
the base64url of the 8-byte key id); a gate keeps the lists in a :class:`StatusCache`, refreshes
them after ``ttl`` when it can, and refuses to trust a list older than its scene allows.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from sdk import sm2
from sdk.keys import b64u_decode, b64u_encode
from sdk.trustlist import TrustList

STATUS_LIST_TYPE = "statuslist+jwt"
#: The kinds whose issuers publish a status list: certificates, ride credentials (account or device), printed
#: cards (a lost card) and venue codes.
STATUS_KINDS = frozenset({"cert", "ridecred", "card", "venue"})
VALID, INVALID, SUSPENDED = 0, 1, 2
STATUS_NAMES = {VALID: "valid", INVALID: "revoked", SUSPENDED: "suspended"}
MAX_LIST_BYTES = 64 * 1024 * 1024  # decompressed: 256 million 2-bit entries
MAX_TOKEN_CHARS = 16 * 1024 * 1024


class StatusListError(ValueError):
    """A status list that must not be used."""


def pack(size: int, statuses: Mapping[int, int], bits: int) -> bytes:
    """The list's byte array for *size* entries, all 0 but those in *statuses*, LSB first.

    Work is proportional to the entries that are not 0, so a list of ten million stays cheap.
    """
    if bits not in (1, 2, 4, 8):
        raise ValueError("bits must be 1, 2, 4 or 8")
    per_byte = 8 // bits
    out = bytearray((size + per_byte - 1) // per_byte)
    for index, status in statuses.items():
        if not 0 <= index < size:
            raise ValueError(f"index {index} outside the list of {size}")
        if not 0 <= status < (1 << bits):
            raise ValueError(f"status {status} does not fit in {bits} bits")
        if status:
            out[index // per_byte] |= status << ((index % per_byte) * bits)
    return bytes(out)


def encode_lst(packed: bytes) -> str:
    return b64u_encode(zlib.compress(packed, 9))


@dataclass(frozen=True)
class StatusList:
    """A verified, decompressed status list of one issuer."""

    issuer: str
    uri: str
    bits: int
    data: bytes
    issued_at: int
    expires_at: int | None
    ttl: int | None

    @property
    def size(self) -> int:
        return len(self.data) * (8 // self.bits)

    def status(self, index: int) -> int:
        """The status at *index*; IndexError when the list has no such entry."""
        if index < 0 or index >= self.size:
            raise IndexError(index)
        per_byte = 8 // self.bits
        return (self.data[index // per_byte] >> ((index % per_byte) * self.bits)) & ((1 << self.bits) - 1)

    @classmethod
    def load(cls, token: str | bytes, trust: TrustList, *, at: float | None = None) -> StatusList:
        """Verify a ``statuslist+jwt`` with its issuer's key from *trust*."""
        now = time.time() if at is None else at
        if isinstance(token, bytes):
            token = token.decode("ascii", errors="replace")
        token = token.strip()
        if len(token) > MAX_TOKEN_CHARS:
            raise StatusListError("status list token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise StatusListError(f"not a JWS: {exc}") from None
        if header.get("typ") != STATUS_LIST_TYPE:
            raise StatusListError(f"type {header.get('typ')!r}, expected {STATUS_LIST_TYPE!r}")
        if set(header) - {"typ", "alg", "kid"}:
            raise StatusListError("header carries unexpected parameters")
        try:
            key = trust.get(b64u_decode(str(header.get("kid", ""))))
        except ValueError:
            key = None
        if key is None:
            raise StatusListError("signed by a key that is not in the trust list")
        if not key.kinds & STATUS_KINDS:
            raise StatusListError(f"{key.issuer} issues nothing that has a status")
        if key.alg_name == sm2.JWS_ALG and not sm2.available():
            raise StatusListError(f"signed with SM2: {sm2.INSTALL_HINT}")
        try:
            claims = jwt.decode(
                token, key=key.public_key, algorithms=[key.alg_name],  # type: ignore[arg-type]
                options={"require": ["iat", "sub", "status_list"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise StatusListError(f"rejected: {exc}") from None
        iat, exp, ttl = claims["iat"], claims.get("exp"), claims.get("ttl")
        if type(iat) is not int or (exp is not None and type(exp) is not int) or (
                ttl is not None and (type(ttl) is not int or ttl <= 0)):
            raise StatusListError("iat, exp and ttl must be integers")
        if exp is not None and exp <= iat:
            raise StatusListError("status list expires before it was issued")
        if iat > now + 300:
            raise StatusListError("status list issued in the future; check the clock")
        if not key.not_before <= iat <= key.not_after:
            raise StatusListError("status list signed outside its key's validity")
        body = claims["status_list"]
        bits = body.get("bits") if isinstance(body, Mapping) else None
        if type(bits) is not int or bits not in (1, 2, 4, 8) or not isinstance(body.get("lst"), str):
            raise StatusListError("status_list must hold bits (1, 2, 4 or 8) and lst")
        try:
            inflater = zlib.decompressobj()
            data = inflater.decompress(b64u_decode(body["lst"]), MAX_LIST_BYTES)
            if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
                raise StatusListError("status list too large, truncated or followed by other data")
        except (zlib.error, ValueError) as exc:
            raise StatusListError(f"lst is not base64url ZLIB data: {exc}") from None
        issuer = claims.get("iss", key.issuer)
        if issuer != key.issuer:
            raise StatusListError("status list names another issuer than its key")
        return cls(issuer=key.issuer, uri=str(claims["sub"]), bits=body["bits"], data=data,
                   issued_at=iat, expires_at=exp, ttl=ttl)


@dataclass(frozen=True)
class Lookup:
    status: int | None  # None: no usable list
    age: int | None
    detail: str = ""


class StatusCache:
    """The status lists a gate holds, one per issuer, with when it received each."""

    def __init__(self) -> None:
        self._lists: dict[str, tuple[StatusList, float]] = {}
        self._lock = threading.Lock()

    def put(self, status_list: StatusList, received_at: float | None = None) -> None:
        """Keep *status_list* unless a newer one of the same issuer is held already."""
        received = time.time() if received_at is None else received_at
        with self._lock:
            held = self._lists.get(status_list.issuer)
            if held is None or held[0].issued_at <= status_list.issued_at:
                self._lists[status_list.issuer] = (status_list, received)

    def load(self, token: str | bytes, trust: TrustList, *, at: float | None = None) -> StatusList:
        status_list = StatusList.load(token, trust, at=at)
        self.put(status_list, at)
        return status_list

    def get(self, issuer: str) -> StatusList | None:
        held = self._lists.get(issuer)
        return held[0] if held else None

    def due_for_refresh(self, now: float | None = None, default_ttl: int = 3600) -> list[str]:
        """Issuers whose list has outlived its ``ttl`` (or is expiring), to fetch again when online."""
        now = time.time() if now is None else now
        due = []
        for issuer, (status_list, received) in list(self._lists.items()):
            ttl = status_list.ttl or default_ttl
            if now >= received + ttl or (status_list.expires_at is not None and now >= status_list.expires_at):
                due.append(issuer)
        return due

    def lookup(self, issuer: str, index: int, now: float, max_age: int) -> Lookup:
        held = self._lists.get(issuer)
        if held is None:
            return Lookup(None, None, f"no status list of {issuer}")
        status_list = held[0]
        age = int(now - status_list.issued_at)
        if status_list.expires_at is not None and now >= status_list.expires_at:
            return Lookup(None, age, f"status list of {issuer} expired {int(now - status_list.expires_at)} s ago")
        if age > max_age:
            return Lookup(None, age, f"status list of {issuer} is {age} s old (scene allows {max_age} s)")
        try:
            return Lookup(status_list.status(index), age)
        except IndexError:
            return Lookup(-1, age, f"index {index} outside the list of {status_list.size}")
