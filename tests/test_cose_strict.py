"""Deterministic encoding (RFC 8949 section 4.2.1) of everything the SDK parses: the COSE_Sign1 structure, its
protected header, and the claims inside (an identity code's, a ride code's). Each malformed form below is
signed with the right key, so that only the parser stands between it and acceptance. Every check that does not
depend on the curve is tried on a city that signs with ES256 and on one that signs with SM2; the forms written
byte by byte for ES256's header (-7) and the high-s twins (an ECDSA P-256 matter) on ES256 alone."""

from __future__ import annotations

import os
import time
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from issuers.codes import encode_claims, to_text
from issuers.keyring import IssuerInfo, Keyring
from issuers.rides import encode_ride_payload, issue_credential
from issuers.trustlist import sign_trust_list
from sdk import MemoryReplayGuard, Reason, TrustList, Verifier, cose, load_anchor, sm2
from sdk.claims import CLAIM_CREDENTIAL, CLAIM_CTI, CLAIM_EXP, CLAIM_IAT, CLAIM_KIND, KIND_IDS
from tests import forge
from verifiers.scenes import SCENES

T0 = int(time.time())
BUS = SCENES["bus"]
METRO = SCENES["metro-gate"]
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))
TRANSIT = IssuerInfo("city-transit", "City Transit Account Platform", ("ridecred",))


@pytest.fixture(params=["ES256", "SM2"])
def ring(request: pytest.FixtureRequest, tmp_path) -> Keyring:
    keyring = Keyring(tmp_path / "keys", signing_alg=request.param)
    keyring.initialise([IDENTITY, TRANSIT], now=T0 - 86400)
    return keyring


@pytest.fixture
def verifier(ring) -> Verifier:
    trust = TrustList.load(sign_trust_list(ring, validity=86400, now=T0 - 60), load_anchor(ring.anchor_public_pem()),
                           at=T0)
    return Verifier(trust, leeway=30, replay_guard=MemoryReplayGuard(clock=lambda: T0))


class Raw(bytes):
    """A value already encoded, written as is."""


def cbor_map(pairs: list[tuple[Any, Any]]) -> bytes:
    """A map written pair by pair as given: repeated keys and any order are possible."""
    assert len(pairs) < 24
    return bytes((0xA0 | len(pairs),)) + b"".join(
        cbor2.dumps(k) + (v if isinstance(v, Raw) else cbor2.dumps(v)) for k, v in pairs)


SigningKey = ec.EllipticCurvePrivateKey | sm2.Sm2PrivateKey
#: For the tests whose forms are ES256's own (its header written byte by byte, high-s twins).
ES256_ONLY = pytest.mark.parametrize("ring", ["ES256"], indirect=True)


def sign_with(key: SigningKey, data: bytes) -> bytes:
    """The raw r || s signature of *data*: ES256 (low s) or SM2 with SM3, as the key is."""
    return key.sign(data) if isinstance(key, sm2.Sm2PrivateKey) else forge.es256(key, data)


def alg_of(key: SigningKey) -> int:
    return cose.ALG_SM2 if isinstance(key, sm2.Sm2PrivateKey) else cose.ALG_ES256


def signed(key: SigningKey, protected: bytes, payload: bytes) -> str:
    """A code text: the exact *protected* and *payload* bytes, honestly signed with *key*."""
    signature = sign_with(key, cose.sig_structure(protected, payload))
    return to_text(cose.assemble(protected, payload, signature))


def id_payload() -> list[tuple[Any, Any]]:
    """An identity code's claims in deterministic order, as pairs."""
    return [(2, os.urandom(10)), (CLAIM_EXP, T0 + 60), (CLAIM_IAT, T0), (CLAIM_CTI, os.urandom(8)), (CLAIM_KIND, 1)]


def identity_key(ring: Keyring) -> tuple[SigningKey, bytes]:
    signer = ring.signer("city-id")
    return signer.private_key, signer.kid


def test_an_honest_code_built_by_these_helpers_is_accepted(ring, verifier):
    key, kid = identity_key(ring)
    code = signed(key, cose.encode_protected(alg_of(key), kid), cbor_map(id_payload()))
    assert verifier.verify(code, BUS, at=T0).accepted
    # and with the city it names, as the issuer writes it now
    named = signed(key, cose.encode_protected(alg_of(key), kid), cbor_map([(1, ring.city), *id_payload()]))
    assert verifier.verify(named, BUS, at=T0).accepted


# -- the protected header ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pairs",
    [
        [(1, -7), (4, "kid"), (1, -7)],
        [(1, -8), (4, "kid"), (1, -7)],  # the algorithm a lenient parser sees depends on which one it keeps
        [(1, -7), (4, "kid"), (4, "kid")],
    ],
    ids=["alg-twice", "alg-twice-differing", "kid-twice"],
)
def test_protected_header_with_duplicate_keys_is_refused_as_malformed(ring, verifier, pairs):
    key, kid = identity_key(ring)
    protected = cbor_map([(k, kid if v == "kid" else alg_of(key) if v == -7 else v) for k, v in pairs])
    with pytest.raises(cose.CoseError, match="deterministic"):
        cose.parse(forge.raw_of(signed(key, protected, cbor_map(id_payload()))))
    result = verifier.verify(signed(key, protected, cbor_map(id_payload())), BUS, at=T0)
    assert result.reason is Reason.MALFORMED and "deterministic" in result.detail


@pytest.mark.parametrize(
    "protected",
    [
        "a2 01 3806 04 48{kid}",  # alg -7 in two bytes
        "a2 01 390006 04 48{kid}",  # alg -7 in three bytes
        "a2 1801 26 04 48{kid}",  # label 1 in two bytes
        "a2 01 26 04 5808{kid}",  # the kid's length in two bytes
        "b802 01 26 04 48{kid}",  # the map's length in two bytes
        "bf 01 26 04 48{kid} ff",  # an indefinite-length map
        "a2 04 48{kid} 01 26",  # keys out of order
    ],
    ids=["alg-2-bytes", "alg-3-bytes", "label-2-bytes", "kid-length-2-bytes", "map-length-2-bytes", "indefinite-map",
         "keys-out-of-order"],
)
@ES256_ONLY
def test_protected_header_not_in_shortest_deterministic_form_is_refused_as_malformed(ring, verifier, protected):
    key, kid = identity_key(ring)
    header = bytes.fromhex(protected.replace(" ", "").format(kid=kid.hex()))
    assert cbor2.loads(header) == {1: -7, 4: kid}  # the same header to a lenient parser
    result = verifier.verify(signed(key, header, cbor_map(id_payload())), BUS, at=T0)
    assert result.reason is Reason.MALFORMED and "deterministic" in result.detail


def test_ride_code_header_with_alg_not_in_shortest_form_is_refused_as_malformed(ring, verifier):
    device = ec.generate_private_key(ec.SECP256R1())
    credential = issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                                  card_type="adult", fare_limit=2000, status_index=1, validity=60, lifetime=3600,
                                  now=T0 - 60)
    payload = encode_ride_payload(credential, generated_at=T0, nonce=os.urandom(8))
    assert verifier.evidence(signed(device, bytes.fromhex("a10126"), payload), at=T0).accepted
    result = verifier.verify(signed(device, bytes.fromhex("a1013806"), payload), METRO, at=T0)
    assert result.reason is Reason.MALFORMED and "deterministic" in result.detail


# -- the outer structure -----------------------------------------------------------------------------------------
def _bstr(data: bytes, width: int = 0) -> bytes:
    """A byte string head of *width* argument bytes (0: the shortest), then the bytes."""
    if not width:
        return cbor2.dumps(data)
    code = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes((0x40 | code,)) + len(data).to_bytes(width, "big") + data


@pytest.mark.parametrize(
    "build",
    [
        lambda p, pl, s: b"\xd2\x84" + _bstr(p) + b"\xa0" + _bstr(pl, 2) + _bstr(s),
        lambda p, pl, s: b"\xd2\x98\x04" + _bstr(p) + b"\xa0" + _bstr(pl) + _bstr(s),
        lambda p, pl, s: b"\xd8\x12\x84" + _bstr(p) + b"\xa0" + _bstr(pl) + _bstr(s),
        lambda p, pl, s: (b"\xd2\x84" + _bstr(p) + b"\xa0" + _bstr(pl)
                          + b"\x5f" + _bstr(s[:32]) + _bstr(s[32:]) + b"\xff"),
        # longer heads than needed, made up for byte for byte by a shared reference (tags 28 and 29) that a
        # check of the length alone cannot tell from the shortest form
        lambda p, pl, s: (b"\xd2\x99\x00\x04\xd8\x1c" + _bstr(p) + b"\xa0\xd8\x1d\x00" + _bstr(s, 8)),
    ],
    ids=["payload-length-2-bytes", "array-length-2-bytes", "tag-2-bytes", "indefinite-signature",
         "long-heads-made-up-by-a-shared-reference"],
)
def test_outer_structure_not_in_shortest_deterministic_form_is_refused_as_malformed(ring, verifier, build):
    key, kid = identity_key(ring)
    protected = cose.encode_protected(alg_of(key), kid)
    payload = cbor_map(id_payload())
    signature = sign_with(key, cose.sig_structure(protected, payload))
    raw = build(protected, payload, signature)
    with pytest.raises(cose.CoseError, match="deterministic"):
        cose.parse(raw)
    assert verifier.verify(to_text(raw), BUS, at=T0).reason is Reason.MALFORMED


# -- the claims --------------------------------------------------------------------------------------------------
def test_claims_with_duplicate_keys_are_refused_as_malformed(ring, verifier):
    key, kid = identity_key(ring)
    pairs = id_payload()
    at = next(i for i, (k, _v) in enumerate(pairs) if k == CLAIM_EXP)
    pairs.insert(at + 1, (CLAIM_EXP, T0 + 10 * 365 * 86400))  # a second expiry, ten years on
    result = verifier.verify(signed(key, cose.encode_protected(alg_of(key), kid), cbor_map(pairs)), BUS, at=T0)
    assert result.reason is Reason.MALFORMED and "claims" in result.detail and "deterministic" in result.detail


@pytest.mark.parametrize(
    ("claim", "longer"),
    [
        (CLAIM_IAT, Raw(b"\x1b\x00\x00\x00\x00" + T0.to_bytes(4, "big"))),  # 8 argument bytes where 4 do
        (CLAIM_KIND, Raw(b"\x18\x01")),  # kind 1 in two bytes
        (CLAIM_CTI, Raw(b"\x58\x08" + b"\x07" * 8)),  # the code id's length in two bytes
    ],
    ids=["iat-9-bytes", "kind-2-bytes", "cti-length-2-bytes"],
)
def test_claims_with_an_integer_or_length_not_in_shortest_form_are_refused_as_malformed(ring, verifier, claim,
                                                                                          longer):
    key, kid = identity_key(ring)
    payload = cbor_map([(k, longer if k == claim else v) for k, v in id_payload()])
    assert cbor2.loads(payload)[claim] == cbor2.loads(longer)  # the same claims to a lenient parser
    result = verifier.verify(signed(key, cose.encode_protected(alg_of(key), kid), payload), BUS, at=T0)
    assert result.reason is Reason.MALFORMED and "claims" in result.detail and "deterministic" in result.detail


@pytest.mark.parametrize("iss", [Raw(b"\x78\x09demo-city"), Raw(b"\x7f\x64demo\x65-city\xff")],
                         ids=["length-2-bytes", "indefinite-text"])
def test_a_city_claim_not_in_shortest_form_is_refused_as_malformed(ring, verifier, iss):
    key, kid = identity_key(ring)
    payload = cbor_map([(1, iss), *id_payload()])
    assert cbor2.loads(payload)[1] == ring.city  # the same claim to a lenient parser
    result = verifier.verify(signed(key, cose.encode_protected(alg_of(key), kid), payload), BUS, at=T0)
    assert result.reason is Reason.MALFORMED and "claims" in result.detail


def test_ride_code_payload_with_duplicate_keys_is_refused_as_malformed(ring, verifier):
    """The phone signs its own ride codes: two nonces would give two parsers two replay ids for one code."""
    device = ec.generate_private_key(ec.SECP256R1())
    credential = issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                                  card_type="adult", fare_limit=2000, status_index=1, validity=60, lifetime=3600,
                                  now=T0 - 60)
    pairs = [(CLAIM_IAT, T0), (CLAIM_CTI, os.urandom(8)), (CLAIM_CTI, os.urandom(8)), (CLAIM_KIND, KIND_IDS["ride"]),
             (CLAIM_CREDENTIAL, credential)]
    protected = cose.encode_protected(cose.ALG_ES256)
    honest = [pair for i, pair in enumerate(pairs) if i != 2]
    assert cbor_map(honest) == encode_ride_payload(credential, generated_at=T0, nonce=honest[1][1])
    assert verifier.evidence(signed(device, protected, cbor_map(honest)), at=T0).accepted
    result = verifier.verify(signed(device, protected, cbor_map(pairs)), METRO, at=T0)
    assert result.reason is Reason.MALFORMED and "deterministic" in result.detail


def test_claims_the_issuer_encodes_parse_byte_for_byte(ring):
    from sdk.claims import parse_claims

    payload = encode_claims("id", issued_at=T0, expires_at=T0 + 60, subject=os.urandom(10),
                            extra={-70000: {"b": 1, "aa": True, "c": "x" * 30}, 99: [1, -1, 2**40]})
    assert parse_claims(payload).extra[99] == [1, -1, 2**40]


# -- high-s ECDSA signatures -------------------------------------------------------------------------------------
# (r, s) and (r, n - s) both verify. The signers write the low one; the parser takes a high one as its low twin
# (codes signed before the signers did are still in the field), and the replay guard keys on the signed code id,
# which the twins share.
def _s(signature: bytes) -> int:
    return int.from_bytes(signature[32:], "big")


def _transit(ring: Keyring) -> tuple[ec.EllipticCurvePrivateKey, bytes, Verifier]:
    """A phone's key, a credential for it, and a verifier with the transit status list (index 1 valid)."""
    from issuers.statuslist import sign_status_list
    from sdk.statuslist import StatusCache

    device = ec.generate_private_key(ec.SECP256R1())
    credential = issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                                  card_type="adult", fare_limit=2000, status_index=1, validity=60, lifetime=3600,
                                  now=T0 - 60)
    trust = TrustList.load(sign_trust_list(ring, validity=86400, now=T0 - 60), load_anchor(ring.anchor_public_pem()),
                           at=T0)
    status = StatusCache()
    status.load(sign_status_list(ring.signer("city-transit"), {}, size=16384, uri="https://x/status/transit", ttl=300,
                                 validity=86400, now=T0 - 10), trust, at=T0)
    return device, credential, Verifier(trust, leeway=30, status=status,
                                        replay_guard=MemoryReplayGuard(clock=lambda: T0))


@ES256_ONLY
def test_every_es256_signer_writes_low_s(ring):
    from issuers.codes import issue_code
    from issuers.rides import make_ride_code

    device, credential, _verifier = _transit(ring)
    for _ in range(24):  # each signer writes a high s half the time unless it normalises
        identity = cbor2.loads(forge.raw_of(issue_code(ring.signer("city-id"), "id", subject=os.urandom(10),
                                                        lifetime=60))).value
        cred = issue_credential(ring.signer("city-transit"), account=os.urandom(10), device_key=device.public_key(),
                                card_type="adult", fare_limit=2000, status_index=1, validity=60, lifetime=3600)
        ride = cbor2.loads(forge.raw_of(make_ride_code(device, credential))).value
        for signature in (identity[3], cbor2.loads(cred)[3], ride[3], forge.es256(device, b"x")):
            assert 0 < _s(signature) <= cose.P256_ORDER // 2


@ES256_ONLY
def test_high_s_twin_of_a_signature_parses_as_the_same_message(ring):
    from issuers.codes import issue_code

    raw = forge.raw_of(issue_code(ring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60))
    protected, _unprotected, payload, signature = cbor2.loads(raw).value
    twin = cose.assemble(protected, payload, forge.high_s_twin(signature))
    assert _s(cbor2.loads(twin).value[3]) > cose.P256_ORDER // 2
    assert cose.parse(twin) == cose.parse(raw)
    assert cose.parse(twin).signature == signature  # the low one, as signed


@ES256_ONLY
def test_high_s_twin_of_an_identity_code_is_that_code_to_the_replay_guard(ring, verifier):
    from issuers.codes import issue_code

    raw = forge.raw_of(issue_code(ring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60, now=T0))
    protected, _unprotected, payload, signature = cbor2.loads(raw).value
    twin = to_text(cose.assemble(protected, payload, forge.high_s_twin(signature)))
    first = verifier.verify(twin, BUS, at=T0)  # a code signed before the signers wrote low s still verifies
    assert first.accepted
    again = verifier.verify(to_text(raw), BUS, at=T0)
    assert again.reason is Reason.REPLAYED and again.code_id == first.code_id


@ES256_ONLY
def test_high_s_twin_of_a_ride_code_or_of_its_credential_is_that_code_to_the_replay_guard(ring):
    from issuers.rides import make_ride_code

    device, credential, verifier = _transit(ring)
    nonce = os.urandom(8)
    protected, _unprotected, payload, signature = cbor2.loads(forge.raw_of(
        make_ride_code(device, credential, now=T0, nonce=nonce))).value
    assert verifier.verify(to_text(cose.assemble(protected, payload, forge.high_s_twin(signature))), METRO,
                           at=T0).accepted
    assert verifier.verify(to_text(cose.assemble(protected, payload, signature)), METRO,
                           at=T0).reason is Reason.REPLAYED
    inner = cbor2.loads(credential)
    twin_credential = cbor2.dumps([inner[0], inner[1], inner[2], forge.high_s_twin(inner[3])])
    again = verifier.verify(make_ride_code(device, twin_credential, now=T0, nonce=nonce), METRO, at=T0)
    assert again.reason is Reason.REPLAYED


LOW_S_RUNNER = """
const src = require("fs").readFileSync(process.argv[1], "utf8");
const start = src.indexOf("  var P256_ORDER"), end = src.indexOf("  // The ride code: COSE_Sign1");
if (start < 0 || end < start) throw new Error("no lowS in rides.js");
const lowS = new Function(src.slice(start, end) + "; return lowS;")();
const crypto = require("crypto");
const out = [];
for (let k = 0; k < 48; k++) {
  const pair = crypto.generateKeyPairSync("ec", {namedCurve: "P-256"});
  const data = crypto.randomBytes(40);
  const signature = crypto.sign("sha256", data, {key: pair.privateKey, dsaEncoding: "ieee-p1363"});
  out.push([pair.publicKey.export({type: "spki", format: "der"}).toString("hex"), data.toString("hex"),
            signature.toString("hex"), Buffer.from(lowS(new Uint8Array(signature))).toString("hex")]);
}
process.stdout.write(JSON.stringify(out));
"""


def test_the_phone_page_writes_low_s():
    """rides.js's lowS, run in Node.js on signatures as WebCrypto makes them (s or n - s at random)."""
    import json
    import subprocess
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    from sdk.keys import verify_es256
    from tests.test_qr_js import node

    rides_js = Path(__file__).resolve().parent.parent / "codeservice" / "static" / "rides.js"
    done = subprocess.run([node(), "-e", LOW_S_RUNNER, str(rides_js)], capture_output=True, text=True, timeout=120,
                          check=True)
    for spki, data, signature, written in (map(bytes.fromhex, row) for row in json.loads(done.stdout)):
        key = serialization.load_der_public_key(spki)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert written == cose.low_s(signature) and _s(written) <= cose.P256_ORDER // 2
        assert verify_es256(key, written, data)
