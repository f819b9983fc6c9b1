"""The SDK's fast paths decide exactly as the full checks they stand in front of: the same bytes accepted, the same
values returned, the same refusal in the same words. Each fast path is compared with the full path it shortcuts,
on honest encodings, on encodings in other forms, and on arbitrary damage."""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk import base45, certid, cose
from sdk.claims import subject_to_text

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.binary(max_size=24) | st.text(max_size=12)
           | st.floats(allow_nan=False, width=16) | st.floats(allow_nan=False))
keys = (st.integers(-300, 300) | st.text(max_size=4) | st.binary(max_size=4) | st.booleans()
        | st.floats(width=16, allow_nan=False))
cbor_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6)
    | st.builds(cbor2.CBORTag, st.sampled_from([1, 24, 32, 258, 1000]), children),
    max_leaves=25,
)


def outcome(fn: Any, data: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(data)
    except cose.CoseError as exc:
        return type(exc).__name__, str(exc)


def encodings(value: Any) -> list[bytes]:
    out = []
    for canonical in (True, False):
        with contextlib.suppress(Exception):  # a value cbor2 cannot write: nothing to compare
            out.append(cbor2.dumps(value, canonical=canonical))
    return out


@settings(max_examples=600, deadline=None)
@given(value=cbor_values, damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=2),
       trailing=st.binary(max_size=2))
def test_loads_exact_decides_as_the_full_canonical_comparison(value, damage, trailing):
    for data in encodings(value):
        mutated = bytearray(data)
        for position, byte in damage:
            if mutated:
                mutated[position % len(mutated)] = byte
        for candidate in (data, bytes(mutated), data + trailing):
            assert outcome(cose.loads_exact, candidate) == outcome(cose._loads_exact_full, candidate)


@pytest.mark.parametrize("hexdata", [
    "a2016161016162",  # text keys of one length in order
    "a2616201616102",  # text keys out of order
    "a2f5010102",  # true before 1: out of canonical order
    "a201010102",  # a repeated key
    "a20102f501",  # 1 then true: in order
    "a2f93c000102",  # a half float key
    "a1fb3ff000000000000001",  # a double that fits a half
    "a1d90102820102",  # a set (tag 258)
    "a10118ff",  # shortest is 18ff
    "a1011900ff",  # a longer form
    "9f01ff",  # an indefinite array
])
def test_loads_exact_on_forms_next_to_the_canonical_one(hexdata):
    data = bytes.fromhex(hexdata)
    assert outcome(cose.loads_exact, data) == outcome(cose._loads_exact_full, data)


def _sign1_bytes(rng: random.Random) -> bytes:
    protected = rng.choice([cose.encode_protected(cose.ALG_ES256, os.urandom(8)), cose.encode_protected(cose.ALG_ES256),
                            cose.encode_protected(cose.ALG_EDDSA, os.urandom(8)), b"", b"\xa0"])
    payload = os.urandom(rng.choice([0, 1, 23, 24, 255, 256, 300]))
    signature = os.urandom(rng.choice([64, 63, 0]))
    return cose.assemble(protected, payload, signature, tagged=rng.random() < 0.7)


@settings(max_examples=600, deadline=None)
@given(seed=st.integers(0, 2**32), damage=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                    max_size=3), cut=st.integers(0, 3), extra=st.binary(max_size=2))
def test_parse_decides_as_the_full_parser(seed, damage, cut, extra):
    data = bytearray(_sign1_bytes(random.Random(seed)))
    for position, byte in damage:
        data[position % len(data)] = byte
    candidate = bytes(data[:len(data) - cut]) + extra
    assert outcome(cose.parse, candidate) == outcome(cose._parse_full, candidate)


def test_parse_reads_both_twins_of_a_signature_as_the_low_one():
    raw = _sign1_bytes(random.Random(1))
    message = cose.parse(raw)
    assert message == cose._parse_full(raw)
    high = cose.P256_ORDER - int.from_bytes(message.signature[32:], "big")
    if high > cose.P256_ORDER // 2:
        twin = cose.assemble(message.protected, message.payload, message.signature[:32] + high.to_bytes(32, "big"))
        assert cose.parse(twin) == message == cose._parse_full(twin)


@pytest.mark.parametrize("s", [0, 1, cose.P256_ORDER // 2, cose.P256_ORDER // 2 + 1, cose.P256_ORDER - 1,
                               cose.P256_ORDER, 2**256 - 1])
def test_low_s_at_the_edges(s):
    signature = b"\x01" * 32 + s.to_bytes(32, "big")
    n = cose.P256_ORDER
    assert cose.low_s(signature) == (signature[:32] + (n - s).to_bytes(32, "big") if n // 2 < s < n else signature)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=120), text=st.text(alphabet=base45.ALPHABET + "abc~", max_size=90))
def test_base45_decodes_as_the_definition(data, text):
    assert base45.b45decode(base45.b45encode(data)) == data

    def by_definition(t: str) -> bytes:
        values = [base45.ALPHABET.index(c) for c in t]  # ValueError: not in the alphabet
        if len(values) % 3 == 1:
            raise ValueError
        out = bytearray()
        for i in range(0, len(values) - 2, 3):
            n = values[i] + 45 * values[i + 1] + 2025 * values[i + 2]
            if n > 0xFFFF:
                raise ValueError
            out += n.to_bytes(2, "big")
        if len(values) % 3 == 2:
            n = values[-2] + 45 * values[-1]
            if n > 0xFF:
                raise ValueError
            out.append(n)
        return bytes(out)

    try:
        expected: bytes | None = by_definition(text)
    except ValueError:
        expected = None
    try:
        got: bytes | None = base45.b45decode(text)
    except base45.Base45Error:
        got = None
    assert got == expected


def _old_certificate_id_parse(text: str) -> certid.CertificateId:
    """CertificateId.parse before its one-match path: the step by step checks alone."""
    if not isinstance(text, str) or not text.startswith(certid.ROOT + "."):
        raise certid.IdentifierError(f"a certificate identifier starts with {certid.ROOT}.")
    parts = text[len(certid.ROOT) + 1:].split(".")
    if len(parts) != 5:
        raise certid.IdentifierError("a certificate identifier has type, issuer, serial, version and check parts")
    *fields, check = parts
    ident = certid.CertificateId.build(*fields)
    if len(check) != 1:
        raise certid.IdentifierError("wrong check character")
    body = f"{certid.ROOT}.{ident.type_code}.{ident.issuer_code}.{ident.serial}.{ident.version}"
    p = 36
    for char in body.replace(".", ""):
        if char not in certid.ALPHANUMERIC:
            raise certid.IdentifierError(f"character {char!r} is not 0-9 or A-Z")
        p = (2 * ((p + certid.ALPHANUMERIC.index(char)) % 36 or 36)) % 37
    if f"{body}.{certid.ALPHANUMERIC[(37 - p) % 36]}" != text:
        raise certid.IdentifierError("wrong check character")
    return ident


def _id_outcome(fn: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", fn(text)
    except certid.IdentifierError as exc:
        return "error", str(exc)


part = st.text(alphabet="0123456789ABCDEFXYZ", min_size=0, max_size=34) | st.sampled_from(["LNYD", "a", "1\n"])


@settings(max_examples=800, deadline=None)
@given(type_code=part, issuer=part, serial=part, version=part, check=st.text(alphabet="0AZPz.", max_size=2),
       root=st.sampled_from([certid.ROOT, "1.2.156.3005.3"]), honest=st.booleans())
def test_certificate_identifiers_parse_as_before(type_code, issuer, serial, version, check, root, honest):
    if honest:
        try:
            text = str(certid.CertificateId.build(type_code, issuer, serial, version))
        except certid.IdentifierError:
            return
    else:
        text = f"{root}.{type_code}.{issuer}.{serial}.{version}.{check}"
    assert _id_outcome(certid.CertificateId.parse, text) == _id_outcome(_old_certificate_id_parse, text)


def test_mod37_36_check_matches_the_standard_loop():
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(certid.ALPHANUMERIC) for _ in range(rng.randrange(0, 50)))
        p = 36
        for char in text:
            p = (2 * ((p + certid.ALPHANUMERIC.index(char)) % 36 or 36)) % 37
        assert certid.mod37_36_check(text) == certid.ALPHANUMERIC[(37 - p) % 36]


@settings(max_examples=500, deadline=None)
@given(sub=st.binary(min_size=0, max_size=32))
def test_subject_text_is_lowercase_base32_without_padding(sub):
    import base64

    assert subject_to_text(sub) == base64.b32encode(sub).decode("ascii").rstrip("=").lower()


def test_what_the_issuers_write_takes_the_fast_paths(monkeypatch):
    from issuers.codes import encode_claims

    payload = encode_claims("cert", issued_at=1_700_000_000, expires_at=1_700_000_060, subject=os.urandom(10),
                            extra={-65538: {1: "1.2.156.3005.2.LNYD.X.1.1.Z", 3: os.urandom(10), 6: 100_000,
                                            7: {"name": "Li Wei", "age_over_60": True}}})
    raw = cose.assemble(cose.encode_protected(cose.ALG_ES256, os.urandom(8)), payload, os.urandom(64))

    def full(_data: bytes) -> Any:
        raise AssertionError("the full path was taken")

    monkeypatch.setattr(cose, "_loads_exact_full", full)
    monkeypatch.setattr(cose, "_parse_full", full)
    assert cose.loads_exact(payload) == cbor2.loads(payload)
    assert cose.parse(raw).payload == payload


@settings(max_examples=2000, deadline=None)
@given(r=st.integers(0, 2**256 - 1) | st.integers(0, 2**40), s=st.integers(0, 2**256 - 1) | st.integers(0, 300))
def test_der_signature_is_encode_dss_signature(r, s):
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from sdk.keys import der_signature

    assert der_signature(r.to_bytes(32, "big") + s.to_bytes(32, "big")) == encode_dss_signature(r, s)
