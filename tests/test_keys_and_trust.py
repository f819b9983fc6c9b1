"""Issuer keys on disk, rotation, and the signed trust list a gate loads."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, KeyringError
from issuers.trustlist import sign_trust_list, trust_list_claims
from sdk import Reason, TrustList, TrustListError, Verifier, load_anchor
from sdk.keys import public_key_to_jwk
from sdk.trustlist import TRUST_LIST_TYPE


def test_private_keys_are_owner_only_and_the_directory_is_private(keyring):
    assert stat.S_IMODE(os.stat(keyring.path).st_mode) == 0o700
    private = list(keyring.path.glob("*.key.pem"))
    assert len(private) == 2  # the anchor and the identity office
    for path in private:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_id_is_derived_from_the_public_key(keyring):
    from sdk.keys import key_id

    signer = keyring.signer("city-id")
    assert signer.kid == key_id(signer.private_key.public_key())
    assert keyring.list_keys()[0]["kid"] == signer.kid.hex()


def test_initialise_is_idempotent(keyring):
    before = keyring.list_keys()
    assert keyring.initialise([IssuerInfo("city-id", "City Identity Office", ("id",))]) is False
    assert keyring.list_keys() == before


def test_a_departments_org_code_is_kept_in_the_index_and_published_with_each_of_its_keys(keyring):
    org = "11370200004512345P"
    keyring.add_issuer(IssuerInfo("civil-affairs", "City Civil Affairs Bureau", ("cert",), ("LNYD",), org))
    assert keyring.issuers()["civil-affairs"].org_code == org and keyring.issuers()["city-id"].org_code is None
    keyring.rotate("civil-affairs", grace=120)
    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    assert [k.get("org_code") for k in claims["keys"] if k["issuer"] == "civil-affairs"] == [org, org]
    assert all("org_code" not in k for k in claims["keys"] if k["issuer"] == "city-id")
    assert keyring.set_org_code("civil-affairs", org) is False  # unchanged: the index is not rewritten
    assert keyring.set_org_code("civil-affairs", "11370200004534567J") is True
    assert keyring.issuers()["civil-affairs"].org_code == "11370200004534567J"
    with pytest.raises(KeyringError):
        keyring.set_org_code("nobody", org)


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_trusted_for_the_grace(keyring, subject):
    now = int(time.time())
    old_code = issue_code(keyring.signer("city-id"), "id", subject=subject, lifetime=60, now=now)
    old_kid = keyring.signer("city-id").kid
    new_kid = keyring.rotate("city-id", grace=120, now=now + 10)
    assert new_kid != old_kid
    assert keyring.signer("city-id").kid == new_kid
    assert not (keyring.path / f"{old_kid.hex()}.key.pem").exists(), "retired private key must be deleted"
    new_code = issue_code(keyring.signer("city-id"), "id", subject=subject, lifetime=60, now=now + 10)

    anchor = load_anchor(keyring.anchor_public_pem())
    during = TrustList.load(sign_trust_list(keyring, validity=3600, now=now + 20), anchor, at=now + 20)
    assert {old_kid, new_kid} <= set(during.keys)
    verifier = Verifier(during, leeway=30)
    assert verifier.verify(old_code, at=now + 30).accepted
    assert verifier.verify(new_code, at=now + 30).accepted

    after = TrustList.load(sign_trust_list(keyring, validity=3600, now=now + 200), anchor, at=now + 200)
    assert old_kid not in after.keys and new_kid in after.keys
    assert Verifier(after).verify(old_code, at=now + 200).reason is Reason.UNKNOWN_KEY


def test_retired_key_entry_expires_in_the_list_it_was_published_in(keyring, subject):
    now = int(time.time())
    old_code = issue_code(keyring.signer("city-id"), "id", subject=subject, lifetime=600, now=now)
    keyring.rotate("city-id", grace=120, now=now + 10)
    trust = TrustList.load(sign_trust_list(keyring, validity=3600, now=now + 20),
                           load_anchor(keyring.anchor_public_pem()), at=now + 20)
    # the code itself lives on, but its key is not valid beyond its grace (plus leeway)
    result = Verifier(trust, leeway=30).verify(old_code, at=now + 10 + 120 + 31)
    assert result.reason is Reason.UNKNOWN_KEY


def test_rotating_an_unknown_issuer_is_an_error(keyring):
    with pytest.raises(KeyringError):
        keyring.rotate("nobody", grace=60)


def test_keyring_reloads_after_another_process_rotated(keyring):
    other_view = Keyring(keyring.path)
    first = other_view.signer("city-id").kid
    time.sleep(0.01)
    keyring.rotate("city-id", grace=60)
    os.utime(keyring.path / "index.json", (time.time() + 1, time.time() + 1))
    assert other_view.signer("city-id").kid != first


def test_damaged_keyring_index_is_a_clear_error(keyring):
    (keyring.path / "index.json").write_text("{not json")
    with pytest.raises(KeyringError, match="damaged"):
        Keyring(keyring.path).signer("city-id")


# -- the trust list ----------------------------------------------------------------------------
def test_trust_list_round_trips_with_key_ids_validity_and_kinds(keyring, trust_token):
    trust = TrustList.load(trust_token, load_anchor(keyring.anchor_public_pem()))
    (key,) = trust.keys.values()
    assert key.issuer == "city-id" and key.kinds == {"id"} and key.alg_name == "ES256"
    assert trust.expires_at - trust.issued_at == 7 * 24 * 3600
    header = jwt.get_unverified_header(trust_token)
    assert header["typ"] == TRUST_LIST_TYPE and header["alg"] == "ES256"


def test_expired_trust_list_is_refused_with_a_clear_error(keyring):
    now = int(time.time())
    token = sign_trust_list(keyring, validity=3600, now=now - 7200)
    with pytest.raises(TrustListError, match="expired"):
        TrustList.load(token, load_anchor(keyring.anchor_public_pem()))


def test_trust_list_from_the_future_is_refused(keyring):
    token = sign_trust_list(keyring, validity=3600, now=time.time() + 7200)
    with pytest.raises(TrustListError, match="not valid yet"):
        TrustList.load(token, load_anchor(keyring.anchor_public_pem()))


def test_trust_list_signed_by_another_anchor_is_refused(keyring, trust_token):
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(TrustListError, match="signature"):
        TrustList.load(trust_token, other)


def test_trust_list_with_an_added_key_is_refused(keyring, trust_token):
    header, payload, signature = trust_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    intruder = ec.generate_private_key(ec.SECP256R1()).public_key()
    claims["keys"].append({**claims["keys"][0], "jwk": public_key_to_jwk(intruder)})
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(TrustListError):
        TrustList.load(f"{header}.{forged_payload}.{signature}", load_anchor(keyring.anchor_public_pem()))


def _sign(keyring, claims, headers=None, alg="ES256", key=None):
    return jwt.encode(claims, key or keyring.anchor_private(), algorithm=alg,
                      headers=headers if headers is not None else {"typ": TRUST_LIST_TYPE})


def test_trust_list_with_a_key_id_not_matching_its_key_is_refused(keyring):
    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    claims["keys"][0]["kid"] = "AAAAAAAAAAA"
    with pytest.raises(TrustListError, match="does not match"):
        TrustList.load(_sign(keyring, claims), load_anchor(keyring.anchor_public_pem()))


def test_trust_list_with_duplicate_key_ids_is_refused(keyring):
    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    claims["keys"].append(dict(claims["keys"][0]))
    with pytest.raises(TrustListError, match="duplicate"):
        TrustList.load(_sign(keyring, claims), load_anchor(keyring.anchor_public_pem()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_trust_list_with_alg_none_or_hmac_keyed_with_the_anchor_is_refused(keyring):
    import hashlib
    import hmac

    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    anchor_pem = keyring.anchor_public_pem()
    anchor = load_anchor(anchor_pem)
    body = _b64(json.dumps(claims).encode())
    unsigned = _b64(json.dumps({"typ": TRUST_LIST_TYPE, "alg": "none"}).encode()) + "." + body + "."
    with pytest.raises(TrustListError):
        TrustList.load(unsigned, anchor)
    signing_input = _b64(json.dumps({"typ": TRUST_LIST_TYPE, "alg": "HS256"}).encode()) + "." + body
    mac = hmac.new(anchor_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TrustListError):
        TrustList.load(signing_input + "." + _b64(mac), anchor)


def test_trust_list_with_wrong_type_or_embedded_key_header_is_refused(keyring):
    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    anchor = load_anchor(keyring.anchor_public_pem())
    with pytest.raises(TrustListError, match="type"):
        TrustList.load(_sign(keyring, claims, headers={"typ": "JWT"}), anchor)
    jwk = public_key_to_jwk(keyring.anchor_private().public_key())
    with pytest.raises(TrustListError, match="unexpected"):
        TrustList.load(_sign(keyring, claims, headers={"typ": TRUST_LIST_TYPE, "jwk": jwk}), anchor)


@pytest.mark.parametrize("text", ["", "garbage", "a.b.c", "\u00e9\u00e9", "x" * 2_000_000])
def test_garbage_trust_list_is_a_clear_error(keyring, text):
    with pytest.raises(TrustListError):
        TrustList.load(text, load_anchor(keyring.anchor_public_pem()))


def test_trust_list_entry_with_a_private_key_is_refused(keyring):
    claims = trust_list_claims(keyring, now=time.time(), validity=3600)
    claims["keys"][0]["jwk"]["d"] = "AAAA"
    with pytest.raises(TrustListError, match="private"):
        TrustList.load(_sign(keyring, claims), load_anchor(keyring.anchor_public_pem()))


def test_anchor_must_be_a_p256_public_key():
    with pytest.raises(TrustListError):
        load_anchor(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
