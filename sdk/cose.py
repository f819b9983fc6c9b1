"""COSE_Sign1 (RFC 9052 section 4.2) as this product uses it: strict parsing and signing.

Only what a citycode needs is accepted: a protected header holding exactly the
algorithm (label 1) and an 8-byte key id (label 4) (or the algorithm alone, for a ride code,
whose signing key the signed payload itself names), an empty unprotected header,
an embedded payload and a raw signature. Anything else is refused, in particular
headers that carry key material or a key location (x5chain, x5t, x5u, COSE_Key),
because a verifier must take its keys from the trust list only.

Deterministic encoding (RFC 8949 section 4.2.1) throughout: the outer structure, the protected header and
(through :func:`loads_exact`) the claims must each be byte for byte the encoding that cbor2's canonical
encoder writes for what they decode to, which is how the issuers and the phone write them. So a repeated map
key, an integer or a length in a longer form than needed (alg -7 as ``38 06`` for ``26``), an indefinite
length, map keys out of order, trailing bytes, or a reference tag (28/29, 25/256) are refused: the same
bytes can then mean one thing only, to this parser and to any other. cbor2 orders map keys length first
(RFC 8949 section 4.2.3); for the keys this product uses that is the bytewise order of section 4.2.1.

ECDSA signatures are malleable: when (r, s) verifies, so does its twin (r, n - s). Every ES256 signer of
this product writes the low form, s <= n/2 (:func:`low_s`: the issuers through ``issuers.codes.cose_sign``,
the phone's page in ``rides.js``). The parser does not refuse the high form, because codes and credentials
signed before the signers wrote low s are still in the field (WebCrypto and ``cryptography`` give either,
half the time each; a ride credential lives up to 30 days, and gates upload the codes they admitted for the
service to check, days later); it takes a high-s signature as its low-s twin instead, so that both parse to
one and the same :class:`Sign1`. Nothing that tells codes apart depends on which twin was shown: the replay
guard keeps the signed code id (``cti``; for a ride code the credential's id and the nonce), which the twins
share, so a twin of a spent code is ``replayed``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from sdk.sm2 import ALG_SM2, JWS_ALG

TAG_SIGN1 = 18
HEADER_ALG = 1
HEADER_KID = 4
KID_LENGTH = 8

#: COSE algorithm identifiers (IANA "COSE Algorithms") of the algorithms we sign with; SM2 with SM3 has none
#: registered, so it takes a private-use value (sdk/sm2.py, docs/codes.md). The names are the JWS ``alg``.
ALG_ES256 = -7
ALG_EDDSA = -8
ALG_NAMES: dict[int, str] = {ALG_ES256: "ES256", ALG_EDDSA: "EdDSA", ALG_SM2: JWS_ALG}
ALG_IDS: dict[str, int] = {name: alg for alg, name in ALG_NAMES.items()}
#: The order n of the P-256 group (SEC 2): with (r, s), the ES256 signature (r, n - s) verifies too.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

#: Header labels that would let a code bring its own key (RFC 9360, RFC 9052).
_KEY_CARRYING_LABELS = {33: "x5chain", 34: "x5t", 35: "x5u", 32: "x5bag", -1: "COSE_Key"}


class CoseError(ValueError):
    """The bytes are not a COSE_Sign1 structure as this product defines it."""


class AlgorithmError(CoseError):
    """The protected header names an algorithm this product does not sign with."""


@dataclass(frozen=True, slots=True)
class Sign1:
    """A parsed COSE_Sign1 message, not yet verified."""

    protected: bytes
    alg: int
    #: Empty when the header names no key: the payload must certify the signing key (a ride code).
    kid: bytes
    payload: bytes
    #: As received; for ES256 in its low-s form (see :func:`low_s`), whichever twin the code carried.
    signature: bytes

    def to_be_signed(self) -> bytes:
        return sig_structure(self.protected, self.payload)


def low_s(signature: bytes) -> bytes:
    """The raw ES256 *signature* ``r || s`` with s in its low form (s <= n/2): of the twins (r, s) and
    (r, n - s), which both verify, the one every signer of this product writes and the parser keeps.
    Anything that is not 64 bytes with 0 < s < n is returned as it is (it will not verify anyway)."""
    if len(signature) != 64:
        return signature
    s = signature[32:]
    if _HALF_ORDER_BYTES < s < _ORDER_BYTES:  # 32 bytes big-endian: bytewise order is numeric order
        return signature[:32] + (P256_ORDER - int.from_bytes(s, "big")).to_bytes(32, "big")
    return signature


_ORDER_BYTES = P256_ORDER.to_bytes(32, "big")
_HALF_ORDER_BYTES = (P256_ORDER // 2).to_bytes(32, "big")


def loads_exact(data: bytes) -> Any:
    """Decode one CBOR item in deterministic encoding that spans all of *data*; raise :class:`CoseError` else.

    Deterministic means byte for byte what ``cbor2.dumps(item, canonical=True)`` writes for the decoded item,
    which is how the issuers and the phone write (see the module docstring). cbor2 alone would ignore
    trailing bytes, keep the last of repeated map keys and take any integer or length in a longer form.

    The check is cheap for what this product writes (maps, arrays, integers, byte and text strings, booleans,
    null): cbor2's plain encoder writes each of those in its shortest definite form and the maps in the order
    decoded, so the plain re-encoding equal to *data*, with every map's keys in canonical order, is the
    canonical re-encoding equal to *data* (the plain encoder costs a quarter of the canonical one, which
    encodes every map key apart to sort them). Anything else (a float, a tag, a set, keys out of order, a
    mismatch) takes the full comparison with the canonical encoding, which decides and words the refusal.
    """
    try:
        item = cbor2.loads(data)
        plain = cbor2.dumps(item)
    except Exception:  # not CBOR, or nothing cbor2 writes back: the full path below says which
        plain = None
    if plain == data and _canonical_tree(item):
        return item
    return _loads_exact_full(data)


def _loads_exact_full(data: bytes) -> Any:
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several unrelated types on bad input
        raise CoseError(f"not valid CBOR: {exc.__class__.__name__}") from None
    if stream.tell() != len(data):
        raise CoseError("trailing bytes after the CBOR item")
    try:
        canonical = cbor2.dumps(item, canonical=True)
    except Exception:  # a decoded value cbor2 cannot write back: it was not written by us
        canonical = b""
    if canonical != data:
        raise CoseError(_NOT_DETERMINISTIC)
    return item


#: Types whose plain and canonical encodings are the same (``bool`` is not an ``int`` here: ``type`` is exact).
_SCALARS = frozenset((int, bytes, str, bool, type(None)))
_KEY_TYPES = frozenset((int, bytes, str))
#: Whether a map's key sequence (as decoded) is in canonical order: the few key sets in use, computed once.
_KEY_ORDER: dict[tuple[Any, ...], bool] = {}
_KEY_ORDER_MAX = 4096


def _keys_in_canonical_order(keys: tuple[Any, ...]) -> bool:
    if not _KEY_TYPES.issuperset(map(type, keys)):
        return False  # a key of another type (first: True and 1.0 would find the entry of 1) goes the full way
    known = _KEY_ORDER.get(keys)
    if known is not None:
        return known
    encoded = [cbor2.dumps(key) for key in keys]
    ordered = all((len(a), a) < (len(b), b) for a, b in itertools.pairwise(encoded))
    if len(_KEY_ORDER) < _KEY_ORDER_MAX:
        _KEY_ORDER[keys] = ordered
    return ordered


def _canonical_tree(item: Any) -> bool:
    """True when *item* holds only scalars, lists and maps whose keys are in canonical order (RFC 8949
    section 4.2.1: length first, then bytewise), so that its plain and canonical encodings are equal."""
    kind = type(item)
    if kind is dict:
        if not _keys_in_canonical_order(tuple(item)):
            return False
        values: Any = item.values()
    elif kind is list:
        values = item
    else:
        return kind in _SCALARS
    if _SCALARS.issuperset(map(type, values)):  # the common case, in C
        return True
    for value in values:  # noqa: SIM110 (a loop: all() over a generator takes twice as long)
        if type(value) not in _SCALARS and not _canonical_tree(value):
            return False
    return True


_NOT_DETERMINISTIC = (
    "not in deterministic encoding (RFC 8949 section 4.2.1): a repeated map key, an integer or length longer "
    "than needed, an indefinite length, map keys out of order or a reference tag"
)


def _bstr_header(length: int) -> bytes:
    if length < 24:
        return bytes((0x40 | length,))
    if length < 0x100:
        return bytes((0x58, length))
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


_SIG1_PREFIX = b"\x84\x6aSignature1"


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The Sig_structure bytes (RFC 9052 section 4.4) with empty external AAD."""
    cacheable = type(protected) is bytes
    head = _SIG_HEADS.get(protected) if cacheable else None
    if head is None:  # the few protected headers in use (as _HEADER_CACHE)
        head = b"".join((_SIG1_PREFIX, _bstr_header(len(protected)), protected, b"\x40"))
        if cacheable and len(_SIG_HEADS) < 1024:
            _SIG_HEADS[protected] = head
    return b"".join((head, _bstr_header(len(payload)), payload))


#: Per protected header: the Sig_structure up to the payload (context, protected header, empty AAD).
_SIG_HEADS: dict[bytes, bytes] = {}


def _encode_sign1(protected: bytes, payload: bytes, signature: bytes, tagged: bool) -> bytes:
    """The deterministic encoding of a COSE_Sign1 with an empty unprotected header."""
    return b"".join((b"\xd2\x84" if tagged else b"\x84", _bstr_header(len(protected)), protected, b"\xa0",
                     _bstr_header(len(payload)), payload, _bstr_header(len(signature)), signature))


_HEADER_CACHE: dict[bytes, tuple[int, bytes]] = {}


def _parse_protected(protected: bytes) -> tuple[int, bytes]:
    """(alg, kid) from the protected header; the few distinct headers in use are cached."""
    cached = _HEADER_CACHE.get(protected)
    if cached is not None:
        return cached
    headers = loads_exact(protected)
    if not isinstance(headers, Mapping):
        raise CoseError("protected header must be a map")
    for label in headers:
        if label in _KEY_CARRYING_LABELS:
            raise CoseError(f"code carries its own key material ({_KEY_CARRYING_LABELS[label]})")
    extra = set(headers) - {HEADER_ALG, HEADER_KID}
    if extra:
        raise CoseError(f"unexpected protected header labels {sorted(map(repr, extra))}")
    alg = headers.get(HEADER_ALG)
    kid = headers.get(HEADER_KID, b"")
    if not isinstance(kid, bytes) or len(kid) not in (0, KID_LENGTH) or (HEADER_KID in headers and not kid):
        raise CoseError(f"key id must be a {KID_LENGTH}-byte string")
    if type(alg) is not int or alg not in ALG_NAMES:
        raise AlgorithmError(f"algorithm {alg!r} is not accepted")
    if len(_HEADER_CACHE) < 1024:
        _HEADER_CACHE[protected] = (alg, kid)
    return alg, kid


def _bstr_at(data: bytes, pos: int) -> tuple[bytes, int]:
    """The byte string whose head is at *pos*, in the shortest form of its length, and where it ends;
    IndexError when there is none such (the caller then takes the full way)."""
    head = data[pos]
    if 0x40 <= head < 0x58:
        start, length = pos + 1, head - 0x40
    elif head == 0x58 and data[pos + 1] >= 24:
        start, length = pos + 2, data[pos + 1]
    elif head == 0x59 and data[pos + 1]:
        start, length = pos + 3, int.from_bytes(data[pos + 1:pos + 3], "big")
    else:  # 4-byte lengths and anything else: the full way (a code is at most 2 KB)
        raise IndexError(pos)
    end = start + length
    if end > len(data):
        raise IndexError(pos)
    return data[start:end], end


def _parse_shortest(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(protected, payload, signature) when *data* is byte for byte the deterministic encoding that
    :func:`_encode_sign1` writes (tag 18 or none, four items, an empty unprotected map, shortest lengths);
    None for anything else, which the full parser then refuses or takes, with its own words."""
    try:
        if data[0] == 0xD2 and data[1] == 0x84:
            pos = 2
        elif data[0] == 0x84:
            pos = 1
        else:
            return None
        protected, pos = _bstr_at(data, pos)
        if data[pos] != 0xA0:
            return None
        payload, pos = _bstr_at(data, pos + 1)
        signature, pos = _bstr_at(data, pos)
    except (IndexError, TypeError):
        return None
    return (protected, payload, signature) if pos == len(data) else None


def parse(data: bytes) -> Sign1:
    """Parse a tagged or untagged COSE_Sign1; raise :class:`CoseError` on anything unexpected.

    The encoding must be deterministic (RFC 8949 section 4.2.1): definite, shortest lengths. What the
    issuers and phones write is read straight off the bytes (:func:`_parse_shortest`); anything else goes
    through cbor2 and the comparison with its deterministic re-encoding, which refuses it or takes it.
    """
    parts = _parse_shortest(data) if type(data) is bytes else None
    if parts is not None:
        protected, payload, signature = parts
        alg, kid = _parse_protected(protected)
        if alg == ALG_ES256:
            signature = low_s(signature)
        return Sign1(protected=protected, alg=alg, kid=kid, payload=payload, signature=signature)
    return _parse_full(data)


def _parse_full(data: bytes) -> Sign1:
    """:func:`parse` through cbor2: decode, check each part, compare with the deterministic re-encoding."""
    try:
        item = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several unrelated types on bad input
        raise CoseError(f"not valid CBOR: {exc.__class__.__name__}") from None
    tagged = isinstance(item, cbor2.CBORTag)
    if tagged:
        if item.tag != TAG_SIGN1:
            raise CoseError(f"unexpected CBOR tag {item.tag}")
        item = item.value
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        raise CoseError("COSE_Sign1 must be an array of four items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise CoseError("protected header, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise CoseError("unprotected header must be a map")
    for label in unprotected:
        if label in _KEY_CARRYING_LABELS:
            raise CoseError(f"code carries its own key material ({_KEY_CARRYING_LABELS[label]})")
    if unprotected:
        raise CoseError("unprotected header must be empty")
    if _encode_sign1(protected, payload, signature, tagged) != data:  # not only the length: tags 28/29 shorten
        raise CoseError(f"trailing bytes, or the structure is {_NOT_DETERMINISTIC}")
    alg, kid = _parse_protected(protected)
    if alg == ALG_ES256:  # the high-s twin of a signature is the same message (see the module docstring)
        signature = low_s(signature)
    return Sign1(protected=protected, alg=alg, kid=kid, payload=payload, signature=signature)


def encode_protected(alg: int, kid: bytes = b"") -> bytes:
    """The protected header bytes in deterministic encoding; no kid for a message signed by a key
    that the payload itself certifies (a ride code, signed by the phone's device key)."""
    headers: dict[int, Any] = {HEADER_ALG: alg}
    if kid:
        headers[HEADER_KID] = kid
    return cbor2.dumps(headers, canonical=True)


def assemble(protected: bytes, payload: bytes, signature: bytes, *, tagged: bool = True) -> bytes:
    """The COSE_Sign1 bytes, tagged unless said (a ride credential, nested in a ride code, goes untagged)."""
    return _encode_sign1(protected, payload, signature, tagged)
