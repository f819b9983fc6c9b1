"""Every reason code of the offline verifier, with real keys and real codes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, generate_key
from issuers.trustlist import sign_trust_list
from sdk import Reason, Scene, TrustList, Verifier, cose, load_anchor, sm2, subject_to_text
from sdk.keys import TrustedKey, alg_for_key, key_id, public_pem
from tests import forge
from tests.conftest import IDENTITY
from verifiers.scenes import SCENES

T0 = int(time.time())
BUS = SCENES["bus"]
WINDOW = SCENES["service-window"]


def signing_key(keyring: Keyring) -> ec.EllipticCurvePrivateKey | sm2.Sm2PrivateKey:
    return keyring.signer("city-id").private_key


@pytest.fixture(params=["ES256", "SM2"])
def keyring(request: pytest.FixtureRequest, tmp_path: Path) -> Keyring:
    """Every attack here is tried on a city that signs with ES256 and on one that signs with SM2."""
    ring = Keyring(tmp_path / "keys", signing_alg=request.param)
    ring.initialise([IDENTITY])
    return ring


# -- accepted ----------------------------------------------------------------------------------
def test_fresh_identity_code_is_accepted_with_kind_subject_and_expiry(verifier, make_code, subject):
    now = int(time.time())
    result = verifier.verify(make_code(now=now), BUS)
    assert result.accepted and result.reason is Reason.OK
    assert result.kind == "id"
    assert result.subject == subject_to_text(subject)
    assert result.expires_at == int(now) + 60
    assert result.issuer == "city-id"
    assert result.scene == "bus"


def test_code_with_surrounding_whitespace_and_as_bytes_is_accepted(verifier, make_code):
    code = make_code()
    assert verifier.verify("  " + code + "\r\n").accepted
    assert verifier.verify(code.encode("ascii")).accepted


# -- not ours ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "https://example.com/pay?id=42",
        "",
        "HC1:6BFOXN%TS3DH0YOJ58S S-W5HDC *M0II5XHC9B5G2+$N IOP-IA%NFQGRJPC%OQHIZC4.OI1RM8ZA.A5:S9MKN4NN3F85QNCY0O%0",
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxIn0.",
        "cc1:RRQT",
    ],
)
def test_text_that_is_not_a_citycode_is_rejected_with_reason_not_a_citycode(verifier, text):
    assert verifier.verify(text).reason is Reason.NOT_A_CITYCODE


@pytest.mark.parametrize("value", [None, 42, 3.5, ["CC1:"], {"code": 1}, b"\xff\xfe\x00", bytearray(b"\x80")])
def test_values_that_are_not_text_are_rejected_not_raised(verifier, value):
    result = verifier.verify(value)
    assert not result.accepted and result.reason is Reason.NOT_A_CITYCODE


# -- damaged -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cut", [1, 2, 3, 10, 60, 150])
def test_truncated_code_is_rejected_with_reason_malformed(verifier, make_code, cut):
    code = make_code()
    assert verifier.verify(code[:-cut]).reason is Reason.MALFORMED


def test_prefix_alone_is_malformed(verifier):
    assert verifier.verify("CC1:").reason is Reason.MALFORMED


def test_oversized_code_is_rejected_with_reason_malformed(verifier, make_code):
    result = verifier.verify(make_code() + "0" * 5000)
    assert result.reason is Reason.MALFORMED and "longer" in result.detail


def test_character_outside_base45_is_malformed(verifier, make_code):
    code = make_code()
    assert verifier.verify(code[:20] + "a" + code[21:]).reason is Reason.MALFORMED


def test_random_bytes_in_base45_are_malformed(verifier):
    for _ in range(50):
        assert verifier.verify(forge.text_of(os.urandom(120))).reason is Reason.MALFORMED


def test_trailing_bytes_after_the_cose_structure_are_malformed(verifier, make_code):
    raw = forge.raw_of(make_code())
    assert verifier.verify(forge.text_of(raw + b"\x00")).reason is Reason.MALFORMED


def test_other_cbor_tag_or_shape_is_malformed(verifier, make_code):
    raw = forge.raw_of(make_code())
    item = cbor2.loads(raw)
    assert verifier.verify(forge.text_of(cbor2.dumps(cbor2.CBORTag(98, item.value)))).reason is Reason.MALFORMED
    assert verifier.verify(forge.text_of(cbor2.dumps(list(item.value)[:3]))).reason is Reason.MALFORMED
    assert verifier.verify(forge.text_of(cbor2.dumps({"a": 1}))).reason is Reason.MALFORMED


def test_untagged_cose_sign1_is_accepted(verifier, keyring):
    code = forge.forge(signing_key(keyring), forge.claims(iat=int(time.time())), tagged=False)
    assert verifier.verify(code).accepted


def test_unprotected_header_is_refused(verifier, keyring):
    code = forge.forge(signing_key(keyring), forge.claims(iat=int(time.time())), unprotected={4: b"12345678"})
    assert verifier.verify(code).reason is Reason.MALFORMED


@pytest.mark.parametrize("label", [33, 34, 35, -1])
def test_code_carrying_its_own_key_or_key_url_is_refused(verifier, keyring, label):
    value = "https://evil.example/key" if label == 35 else b"\x01" * 40
    key = signing_key(keyring)
    for where in ("protected", "unprotected"):
        kwargs = {"headers": {label: value}} if where == "protected" else {"unprotected": {label: value}}
        result = verifier.verify(forge.forge(key, forge.claims(iat=int(time.time())), **kwargs))
        assert result.reason is Reason.MALFORMED and "own key" in result.detail


def test_kid_of_wrong_length_is_malformed(verifier, keyring):
    code = forge.forge(signing_key(keyring), forge.claims(iat=int(time.time())), kid=b"short")
    assert verifier.verify(code).reason is Reason.MALFORMED


@pytest.mark.parametrize(
    "payload",
    [
        cbor2.dumps([1, 2, 3]),
        cbor2.dumps({6: 1, 4: 2}),
        cbor2.dumps({-65537: 99, 6: T0, 4: T0 + 60, 7: os.urandom(8), 2: os.urandom(10)}),
        cbor2.dumps({-65537: 1, 6: "now", 4: T0 + 60, 7: os.urandom(8), 2: os.urandom(10)}),
        cbor2.dumps({-65537: 1, 6: True, 4: T0 + 60, 7: os.urandom(8), 2: os.urandom(10)}),
        cbor2.dumps({-65537: 1, 6: T0 + 60, 4: T0, 7: os.urandom(8), 2: os.urandom(10)}),
        cbor2.dumps({-65537: 1, 6: T0, 4: T0 + 60, 7: b"x", 2: os.urandom(10)}),
        cbor2.dumps({-65537: 1, 6: T0, 4: T0 + 60, 7: os.urandom(8)}),
        cbor2.dumps({-65537: 1, 6: T0, 4: T0 + 60, 7: os.urandom(8), 2: os.urandom(10)}) + b"\x00",
    ],
    ids=["not-map", "no-kind", "unknown-kind", "text-time", "bool-time", "exp-before-iat", "short-cti",
         "id-without-subject", "trailing"],
)
def test_signed_claims_not_to_the_specification_are_malformed(verifier, keyring, payload):
    code = forge.forge(signing_key(keyring), payload)
    assert verifier.verify(code, at=T0 + 10).reason is Reason.MALFORMED


# -- algorithms --------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", 0, 5, 4, 6, 7, -37, -257, None, "ES256"])
def test_code_naming_none_hmac_or_other_algorithms_is_refused_with_unsupported_alg(verifier, keyring, alg):
    code = forge.forge(signing_key(keyring), forge.claims(iat=int(time.time())), alg=alg, signer="none")
    assert verifier.verify(code).reason is Reason.UNSUPPORTED_ALG


def test_hmac_code_keyed_with_the_published_public_key_is_refused(verifier, keyring):
    key = signing_key(keyring)
    kid = key_id(key.public_key())
    code = forge.forge(public_pem(key.public_key()), forge.claims(iat=int(time.time())), alg=5, kid=kid, signer="hmac")
    assert verifier.verify(code).reason is Reason.UNSUPPORTED_ALG


def test_code_claiming_eddsa_for_a_p256_key_is_refused_with_unsupported_alg(verifier, keyring):
    key = signing_key(keyring)
    other = ed25519.Ed25519PrivateKey.generate()
    code = forge.forge(other, forge.claims(iat=int(time.time())), alg=-8, kid=key_id(key.public_key()), signer="eddsa")
    assert verifier.verify(code).reason is Reason.UNSUPPORTED_ALG


def test_ed25519_issuer_key_is_verified_with_eddsa(keyring):
    key = ed25519.Ed25519PrivateKey.generate()
    now = int(time.time())
    trusted = TrustedKey(kid=key_id(key.public_key()), issuer="test", public_key=key.public_key(),
                         alg=alg_for_key(key.public_key()), not_before=now - 10, not_after=now + 3600,
                         kinds=frozenset({"id"}))
    verifier = Verifier(TrustList.from_keys([trusted], issued_at=now, expires_at=now + 3600))
    code = forge.forge(key, forge.claims(iat=now), alg=-8, signer="eddsa")
    assert verifier.verify(code).accepted
    es_code = forge.forge(key, forge.claims(iat=now), alg=-7, signer="none")
    assert verifier.verify(es_code).reason is Reason.UNSUPPORTED_ALG


# -- keys and signatures -----------------------------------------------------------------------
def test_code_signed_by_a_key_not_in_the_trust_list_is_rejected_with_unknown_key(verifier, subject):
    stranger = Keyring_with_identity()
    code = issue_code(stranger.signer("city-id"), "id", subject=subject, lifetime=60)
    assert verifier.verify(code).reason is Reason.UNKNOWN_KEY


def Keyring_with_identity() -> Keyring:
    import tempfile

    ring = Keyring(tempfile.mkdtemp() + "/keys")
    ring.initialise([IssuerInfo("city-id", "Impostor", ("id",))])
    return ring


def test_code_whose_header_names_the_other_curve_algorithm_is_refused_with_unsupported_alg(verifier, keyring):
    """An SM2 key's code claiming ES256 (signed with a P-256 key under its kid), and the other way round."""
    key = signing_key(keyring)
    other = generate_key("ES256" if isinstance(key, sm2.Sm2PrivateKey) else "SM2")
    code = forge.forge(other, forge.claims(iat=int(time.time())), kid=key_id(key.public_key()))
    result = verifier.verify(code)
    assert result.reason is Reason.UNSUPPORTED_ALG and keyring.signer("city-id").alg_name in result.detail
    # The same with the key's own signature, only the header's algorithm changed.
    wrong = cose.ALG_ES256 if isinstance(key, sm2.Sm2PrivateKey) else cose.ALG_SM2
    relabelled = forge.forge(key, forge.claims(iat=int(time.time())), alg=wrong)
    assert verifier.verify(relabelled).reason is Reason.UNSUPPORTED_ALG
    assert verifier.verify(forge.forge(key, forge.claims(iat=int(time.time())))).accepted


def test_stranger_key_using_a_trusted_kid_fails_the_signature_check(verifier, keyring):
    stranger = generate_key(keyring.anchor_alg())  # the same algorithm as the trusted key
    code = forge.forge(stranger, forge.claims(iat=int(time.time())), kid=key_id(signing_key(keyring).public_key()))
    assert verifier.verify(code).reason is Reason.BAD_SIGNATURE


def test_tampered_signature_is_rejected_with_bad_signature(verifier, make_code):
    raw = bytearray(forge.raw_of(make_code()))
    raw[-5] ^= 0x01
    assert verifier.verify(forge.text_of(bytes(raw))).reason is Reason.BAD_SIGNATURE


def test_tampered_payload_is_rejected_with_bad_signature(verifier, make_code):
    item = cbor2.loads(forge.raw_of(make_code()))
    protected, _unprotected, payload, signature = item.value
    claims = dict(cbor2.loads(payload))
    claims[2] = os.urandom(10)  # another resident
    claims[4] = claims[4] + 3600  # longer life
    forged = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps(claims, canonical=True), signature]))
    assert verifier.verify(forge.text_of(forged)).reason is Reason.BAD_SIGNATURE


def test_signature_of_wrong_length_is_bad_signature(verifier, make_code):
    item = cbor2.loads(forge.raw_of(make_code()))
    protected, _, payload, signature = item.value
    short = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature[:40]]))
    assert verifier.verify(forge.text_of(short)).reason is Reason.BAD_SIGNATURE


def test_key_trusted_for_other_kinds_is_rejected_with_untrusted_issuer(tmp_path, subject):
    ring = Keyring(tmp_path / "k")
    ring.initialise([IssuerInfo("civil-affairs", "Civil Affairs Bureau", ("cert",))])
    trust = TrustList.load(sign_trust_list(ring, validity=3600), load_anchor(ring.anchor_public_pem()))
    code = issue_code(ring.signer("civil-affairs"), "id", subject=subject, lifetime=60)
    result = Verifier(trust).verify(code)
    assert result.reason is Reason.UNTRUSTED_ISSUER and result.issuer == "civil-affairs"


# -- time --------------------------------------------------------------------------------------
def test_expired_code_is_rejected_with_reason_expired(verifier, make_code):
    now = int(time.time())
    code = make_code(now=now, lifetime=60)
    assert verifier.verify(code, at=now + 60 + 30).accepted  # within leeway
    result = verifier.verify(code, at=now + 60 + 32)
    assert result.reason is Reason.EXPIRED and result.kind == "id"


def test_code_from_the_future_is_rejected_with_reason_not_yet_valid(verifier, make_code):
    now = int(time.time())
    code = make_code(now=now + 120)
    assert verifier.verify(code, at=now).reason is Reason.NOT_YET_VALID
    assert verifier.verify(make_code(now=now + 20), at=now).accepted  # within leeway


def test_leeway_is_configurable(trust, make_code):
    now = int(time.time())
    code = make_code(now=now, lifetime=60)
    assert Verifier(trust, leeway=0).verify(code, at=now + 62).reason is Reason.EXPIRED
    assert Verifier(trust, leeway=120).verify(code, at=now + 150).accepted
    with pytest.raises(ValueError):
        Verifier(trust, leeway=-1)


def test_expired_trust_list_makes_every_code_refused_with_trust_list_expired(verifier, trust, make_code):
    at = trust.expires_at + 1
    result = verifier.verify(make_code(now=at), at=at)
    assert result.reason is Reason.TRUST_LIST_EXPIRED


# -- scenes ------------------------------------------------------------------------------------
def test_code_of_a_kind_the_scene_does_not_take_is_rejected_with_wrong_kind(tmp_path):
    from issuers.certificates import issue_show_code
    from issuers.statuslist import sign_status_list
    from sdk.statuslist import StatusCache

    ring = Keyring(tmp_path / "k")
    ring.initialise([IssuerInfo("civil-affairs", "Civil Affairs Bureau", ("cert",), ("LNYD",), "11370200004512345P")])
    trust = TrustList.load(sign_trust_list(ring, validity=3600), load_anchor(ring.anchor_public_pem()))
    signer = ring.signer("civil-affairs")
    status = StatusCache()
    status.load(sign_status_list(signer, {}, size=1024, uri="urn:test", ttl=60, validity=3600), trust)
    from sdk.certid import CertificateId

    cert_id = str(CertificateId.build("LNYD", "11370200004512345P", "00000001", 1))
    code = issue_show_code(signer, cert_id=cert_id, type_code="LNYD", holder="x" * 18,
                           valid_from=T0 - 10, valid_until=T0 + 86400, status_index=5, disclosed={}, lifetime=60)
    verifier = Verifier(trust, status=status)
    assert verifier.verify(code).accepted  # genuine
    assert verifier.verify(code, BUS).reason is Reason.WRONG_KIND


def test_bus_accepts_a_code_once_and_then_rejects_it_with_replayed(verifier, make_code):
    code = make_code()
    assert verifier.verify(code, BUS).accepted
    second = verifier.verify(code, BUS)
    assert second.reason is Reason.REPLAYED and second.subject is not None


def test_service_window_may_rescan_a_code_while_it_lives(verifier, make_code):
    code = make_code()
    assert all(verifier.verify(code, WINDOW).accepted for _ in range(3))


def test_refused_code_does_not_use_up_its_id(verifier, make_code):
    now = int(time.time())
    code = make_code(now=now)
    assert verifier.verify(code, BUS, at=now - 300).reason is Reason.NOT_YET_VALID
    assert verifier.verify(code, BUS, at=now).accepted


def test_single_use_scenes_sharing_a_replay_scope_share_the_guard(verifier, make_code):
    a = Scene("metro-in-a", frozenset({"id"}), single_use=True, replay_scope="metro")
    b = Scene("metro-in-b", frozenset({"id"}), single_use=True, replay_scope="metro")
    other = Scene("bus-7", frozenset({"id"}), single_use=True)
    code = make_code()
    assert verifier.verify(code, a).accepted
    assert verifier.verify(code, b).reason is Reason.REPLAYED
    assert verifier.verify(code, other).accepted


def test_replay_guard_failure_refuses_single_use_scene(trust, make_code):
    class Broken:
        def first_use(self, scope, code_id, keep_until):
            raise ConnectionError("down")

    verifier = Verifier(trust, replay_guard=Broken())
    code = make_code()
    assert verifier.verify(code, BUS).reason is Reason.REPLAY_GUARD_UNAVAILABLE
    assert verifier.verify(code, WINDOW).accepted


def test_every_result_serialises_to_json_with_a_stable_reason(verifier):
    import json

    data = json.loads(json.dumps(verifier.verify("nonsense").to_dict()))
    assert data["reason"] == "not_a_citycode" and data["accepted"] is False and data["message"]
