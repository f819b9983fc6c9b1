"""SM2 with SM3: the standards' own examples (GB/T 32905, GB/T 32918.2 and .5), the library against a verifier
written from the standards alone (tests/sm2_reference.py), keys, COSE and JWS round trips, and a gate without
the library (it verifies ES256 and refuses SM2 saying why)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jwt
import pytest

from issuers.codes import cose_sign, issue_code
from issuers.keyring import IssuerInfo, Keyring, KeyringError
from issuers.trustlist import sign_trust_list
from sdk import Scene, TrustList, Verifier, cose, load_anchor, sm2
from sdk.keys import key_id, load_public_pem, public_key_from_jwk, public_key_to_jwk
from sdk.reasons import Reason
from sdk.trustlist import TrustListError
from tests import sm2_reference as ref

ROOT = Path(__file__).resolve().parents[1]

# GB/T 32918.5-2017 annex A (GM/T 0003.5-2012 A.2): sm2p256v1, the default user id, "message digest".
D = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
XA = 0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020
YA = 0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13
K = 0x59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21
Z = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
SIGNATURE = R.to_bytes(32, "big") + S.to_bytes(32, "big")
MESSAGE = b"message digest"

ID = IssuerInfo("city-id", "City identity office", ("id",))


@pytest.mark.parametrize(("message", "expected"), [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
])
def test_sm3_gives_the_digests_of_gbt_32905_appendix_a(message, expected):
    from tongsuopy.crypto import hashes

    digest = hashes.Hash(hashes.SM3())
    digest.update(message)
    assert bytes(digest.finalize()).hex() == expected
    assert ref.sm3(message).hex() == expected


def test_the_worked_example_of_gbt_32918_2_on_its_example_curve():
    """Annex A of GB/T 32918.2 (draft-shen-sm2-ecdsa-02 A.2): its own curve, user id ALICE123@YAHOO.COM. The
    library knows only sm2p256v1, so the reference checks it: the key, Z, e, the signature with the given k,
    and the signature verifying while a changed message does not."""
    curve, user_id = ref.EXAMPLE_FP256, b"ALICE123@YAHOO.COM"
    d = 0x128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263
    public = (0x0AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A,
              0x7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857)
    assert curve.mul(d) == public
    assert ref.z_value(curve, user_id, public).hex().upper() == \
        "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A"
    assert f"{ref.digest(curve, user_id, public, MESSAGE):064X}" == \
        "B524F552CD82B8B028476E005C377FB19A87E6FC682D48BB5D42E3D9B9EFFE76"
    k = 0x6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F
    r, s = ref.sign(curve, d, k, MESSAGE, user_id)
    assert (r, s) == (0x40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1,
                      0x6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7)
    assert ref.verify(curve, public, MESSAGE, r, s, user_id)
    assert not ref.verify(curve, public, b"message digesT", r, s, user_id)
    assert not ref.verify(curve, public, MESSAGE, r, s, b"1234567812345678")


def test_the_sm2p256v1_example_verifies_with_the_library_and_the_default_user_id():
    public = sm2.Sm2PublicKey(XA, YA)
    assert sm2.Sm2PrivateKey.from_value(D).public_key() == public
    assert public.verify(SIGNATURE, MESSAGE)
    assert ref.z_value(ref.SM2P256V1, sm2.DEFAULT_USER_ID, (XA, YA)).hex().upper() == Z
    assert f"{ref.digest(ref.SM2P256V1, sm2.DEFAULT_USER_ID, (XA, YA), MESSAGE):064X}" == E
    assert ref.sign(ref.SM2P256V1, D, K, MESSAGE, sm2.DEFAULT_USER_ID) == (R, S)


@pytest.mark.parametrize("change", ["message", "r", "s", "length", "zero_r", "s_is_n"])
def test_the_sm2p256v1_example_changed_in_any_way_does_not_verify(change):
    public, message, signature = sm2.Sm2PublicKey(XA, YA), MESSAGE, bytearray(SIGNATURE)
    if change == "message":
        message = b"message digesu"
    elif change == "r":
        signature[5] ^= 0x10
    elif change == "s":
        signature[63] ^= 1
    elif change == "length":
        signature = signature[:63]
    elif change == "zero_r":
        signature[:32] = bytes(32)
    elif change == "s_is_n":
        signature[32:] = sm2.N.to_bytes(32, "big")
    assert not public.verify(bytes(signature), message)


def test_what_the_library_signs_verifies_by_the_standard_alone_and_not_with_another_key():
    key = sm2.Sm2PrivateKey.generate()
    data = os.urandom(150)
    signature = key.sign(data)
    assert len(signature) == 64 and key.public_key().verify(signature, data)
    public = (key.public_key().x, key.public_key().y)
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    assert ref.verify(ref.SM2P256V1, public, data, r, s, sm2.DEFAULT_USER_ID)
    assert not ref.verify(ref.SM2P256V1, public, data, r, s, b"ALICE123@YAHOO.COM")  # Z binds the user id
    assert not sm2.Sm2PrivateKey.generate().public_key().verify(signature, data)


def test_an_sm2_key_round_trips_through_pem_and_jwk_with_its_own_key_id():
    key = sm2.Sm2PrivateKey.generate()
    public = key.public_key()
    assert load_public_pem(public.public_pem()) == public
    assert sm2.Sm2PrivateKey.from_pem(key.private_pem()).public_key() == public
    assert sm2.is_private_pem(key.private_pem())
    jwk = public_key_to_jwk(public)
    assert jwk["kty"] == "EC" and jwk["crv"] == "SM2" and public_key_from_jwk(jwk) == public
    assert len(key_id(public)) == 8
    # The library's own SubjectPublicKeyInfo is the one the key id is taken over.
    from tongsuopy.crypto import serialization

    assert key._native.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo) == public.spki_der()


def test_a_point_off_the_curve_is_not_a_key():
    with pytest.raises(ValueError, match="sm2p256v1"):
        sm2.Sm2PublicKey(XA, YA + 1)
    with pytest.raises(ValueError):
        public_key_from_jwk({"kty": "EC", "crv": "SM2", "x": "AAAA", "y": "AAAA"})


def test_a_cose_sign1_signed_with_sm2_names_the_private_use_algorithm_and_verifies_by_the_standard():
    key = sm2.Sm2PrivateKey.generate()
    message = cose.parse(cose_sign(key, b"payload", kid=key_id(key.public_key())))
    assert message.alg == cose.ALG_SM2 == -70001 and cose.ALG_NAMES[message.alg] == "SM2SM3"
    r, s = int.from_bytes(message.signature[:32], "big"), int.from_bytes(message.signature[32:], "big")
    public = key.public_key()
    assert ref.verify(ref.SM2P256V1, (public.x, public.y), message.to_be_signed(), r, s, sm2.DEFAULT_USER_ID)


def test_a_jws_signed_with_sm2_verifies_only_as_sm2sm3_with_its_key():
    key = sm2.Sm2PrivateKey.generate()
    token = jwt.encode({"a": 1}, key, algorithm="SM2SM3")  # type: ignore[arg-type]
    assert jwt.get_unverified_header(token)["alg"] == "SM2SM3"
    assert jwt.decode(token, key.public_key(), algorithms=["SM2SM3"]) == {"a": 1}  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, sm2.Sm2PrivateKey.generate().public_key(), algorithms=["SM2SM3"])  # type: ignore[arg-type]
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, key.public_key(), algorithms=["ES256"])  # type: ignore[arg-type]
    signature = token.split(".")[2]
    assert len(jwt.utils.base64url_decode(signature)) == 64  # r || s, as in COSE


def test_an_sm2_keyring_signs_codes_and_a_trust_list_that_a_gate_verifies(tmp_path):
    ring = Keyring(tmp_path / "keys", signing_alg="SM2")
    ring.initialise([ID])
    assert ring.anchor_alg() == "SM2" and ring.list_keys()[0]["alg"] == "SM2SM3"
    token = sign_trust_list(ring, validity=3600)
    assert jwt.get_unverified_header(token)["alg"] == "SM2SM3"
    anchor = load_anchor(ring.anchor_public_pem())
    assert isinstance(anchor, sm2.Sm2PublicKey)
    trust = TrustList.load(token, anchor)
    (entry,) = trust.keys.values()
    assert entry.alg == cose.ALG_SM2
    code = issue_code(ring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60)
    result = Verifier(trust).verify(code, Scene("bus", frozenset({"id"}), single_use=False))
    assert result.accepted, result
    old = ring.signer("city-id").kid
    new = ring.rotate("city-id", grace=60)
    assert new != old and ring.list_keys()[-1]["alg"] == "SM2SM3"  # a rotation keeps the issuer's algorithm


def test_a_trust_list_whose_header_names_another_algorithm_than_the_anchor_is_refused(tmp_path):
    es = Keyring(tmp_path / "es")
    es.initialise([ID])
    token = sign_trust_list(es, validity=3600)
    sm = Keyring(tmp_path / "sm", signing_alg="SM2")
    sm.initialise([ID])
    with pytest.raises(TrustListError, match="anchor signs SM2SM3"):
        TrustList.load(token, load_anchor(sm.anchor_public_pem()))
    with pytest.raises(TrustListError, match="anchor signs ES256"):
        TrustList.load(sign_trust_list(sm, validity=3600), load_anchor(es.anchor_public_pem()))


def test_a_trust_list_entry_whose_alg_is_not_its_keys_is_refused(tmp_path):
    ring = Keyring(tmp_path / "keys", signing_alg="SM2")
    ring.initialise([ID])
    from issuers.trustlist import trust_list_claims

    claims = trust_list_claims(ring, now=time.time(), validity=3600)
    claims["keys"][0]["alg"] = "ES256"
    token = jwt.encode(claims, ring.anchor_private(), algorithm="SM2SM3",  # type: ignore[arg-type]
                       headers={"typ": "trustlist+jwt"})
    with pytest.raises(TrustListError, match="not that of its key"):
        TrustList.load(token, load_anchor(ring.anchor_public_pem()))


def test_per_issuer_algorithms_mix_in_one_keyring(tmp_path):
    ring = Keyring(tmp_path / "keys", issuer_algs={"city-transit": "SM2"})
    ring.initialise([ID, IssuerInfo("city-transit", "Transit", ("ridecred",))])
    algs = {k["issuer"]: k["alg"] for k in ring.list_keys()}
    assert algs == {"city-id": "ES256", "city-transit": "SM2SM3"} and ring.anchor_alg() == "ES256"
    with pytest.raises(KeyringError, match="unknown signing algorithm"):
        Keyring(tmp_path / "other", signing_alg="RSA").initialise([ID])


def test_a_gate_without_the_sm2_library_verifies_es256_and_refuses_sm2_saying_why(tmp_path):
    sm = Keyring(tmp_path / "sm", issuer_algs={"city-sm": "SM2"})  # an ES256 anchor, one SM2 issuer
    sm.initialise([ID, IssuerInfo("city-sm", "SM2 office", ("id",))])
    (tmp_path / "trust.jwt").write_text(sign_trust_list(sm, validity=3600))
    (tmp_path / "anchor.pem").write_bytes(sm.anchor_public_pem())
    sm2_city = Keyring(tmp_path / "sm2city", signing_alg="SM2")
    sm2_city.initialise([ID])
    (tmp_path / "sm-anchor.pem").write_bytes(sm2_city.anchor_public_pem())
    es_code = issue_code(sm.signer("city-id"), "id", subject=os.urandom(10), lifetime=60)
    sm_code = issue_code(sm.signer("city-sm"), "id", subject=os.urandom(10), lifetime=60)
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tongsuopy":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from pathlib import Path
        from sdk import Scene, TrustList, TrustListError, Verifier, load_anchor, sm2
        assert not sm2.available()
        anchor = load_anchor(Path({str(tmp_path / "anchor.pem")!r}))
        trust = TrustList.load_file({str(tmp_path / "trust.jwt")!r}, anchor)
        verifier = Verifier(trust)
        scene = Scene("bus", frozenset({{"id"}}), single_use=False)
        ok = verifier.verify({es_code!r}, scene)
        assert ok.accepted, ok
        no = verifier.verify({sm_code!r}, scene)
        assert not no.accepted and no.reason == "unsupported_alg" and "sm2 extra" in no.detail, no
        try:
            TrustList.load_file({str(tmp_path / "trust.jwt")!r}, load_anchor(Path({str(tmp_path / "sm-anchor.pem")!r})))
        except TrustListError as exc:
            assert "SM2" in str(exc), exc
        else:
            raise AssertionError("an SM2 anchor's list loaded without the library")
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_verifier_refuses_an_sm2_code_whose_header_names_es256(tmp_path):
    ring = Keyring(tmp_path / "keys", signing_alg="SM2")
    ring.initialise([ID])
    trust = TrustList.load(sign_trust_list(ring, validity=3600), load_anchor(ring.anchor_public_pem()))
    signer = ring.signer("city-id")
    from issuers.codes import encode_claims, to_text

    now = int(time.time())
    payload = encode_claims("id", issued_at=now, expires_at=now + 60, subject=os.urandom(10))
    protected = cose.encode_protected(cose.ALG_ES256, signer.kid)
    assert isinstance(signer.private_key, sm2.Sm2PrivateKey)
    forged = cose.assemble(protected, payload, signer.private_key.sign(cose.sig_structure(protected, payload)))
    result = Verifier(trust).verify(to_text(forged), Scene("bus", frozenset({"id"}), single_use=False))
    assert not result.accepted and result.reason == Reason.UNSUPPORTED_ALG


def test_an_sm2_trust_list_is_what_the_api_document_describes(tmp_path):
    import json as json_

    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = json_.loads((ROOT / "codeservice" / "openapi.json").read_text("utf-8"))
    registry = Registry().with_resource("urn:spec", Resource.from_contents(spec, default_specification=DRAFT202012))
    schema = jsonschema.Draft202012Validator({"$ref": "urn:spec#/components/schemas/TrustListClaims"},
                                             registry=registry)
    ring = Keyring(tmp_path / "keys", signing_alg="SM2")
    ring.initialise([ID])
    claims = jwt.decode(sign_trust_list(ring, validity=3600), options={"verify_signature": False})
    schema.validate(claims)
    assert claims["keys"][0]["alg"] == "SM2SM3" and claims["keys"][0]["jwk"]["crv"] == "SM2"
    assert not schema.is_valid({**claims, "keys": [{**claims["keys"][0], "alg": "SM2"}]})
