"""Property-based tests: arbitrary text and bytes never raise out of the verifier or the endpoint,
and nothing random is ever accepted."""

from __future__ import annotations

import json
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeservice.app import create_app
from issuers.keyring import Keyring
from sdk import PREFIX, Reason
from sdk.base45 import ALPHABET, b45encode
from tests import forge
from tests.conftest import IDENTITY, make_settings
from verifiers.scenes import SCENES

FIXTURES = [HealthCheck.function_scoped_fixture]


@pytest.fixture(params=["ES256", "SM2"])
def keyring(request: pytest.FixtureRequest, tmp_path: Path) -> Keyring:
    """Every attack here is tried on a city that signs with ES256 and on one that signs with SM2."""
    ring = Keyring(tmp_path / "keys", signing_alg=request.param)
    ring.initialise([IDENTITY])
    return ring

texts = st.one_of(
    st.text(max_size=400),
    st.text(alphabet=ALPHABET, max_size=400).map(lambda s: PREFIX + s),
    st.binary(max_size=300).map(lambda b: PREFIX + b45encode(b)),
)

cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.integers(-5, 40) | st.text(max_size=3),
                                                                     children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, suppress_health_check=FIXTURES, deadline=None)
@given(text=texts, scene=st.sampled_from([None, *SCENES.values()]))
def test_arbitrary_text_is_refused_with_a_reason_and_never_raises(verifier, text, scene):
    result = verifier.verify(text, scene)
    assert not result.accepted
    assert isinstance(result.reason, Reason)


@settings(max_examples=300, suppress_health_check=FIXTURES, deadline=None)
@given(data=st.binary(max_size=500))
def test_arbitrary_bytes_are_refused(verifier, data):
    assert not verifier.verify(data).accepted
    assert not verifier.verify_image(data).accepted


@settings(max_examples=300, suppress_health_check=FIXTURES, deadline=None)
@given(item=cbor_values)
def test_arbitrary_cbor_structures_are_refused(verifier, item):
    assert not verifier.verify(PREFIX + b45encode(cbor2.dumps(item))).accepted
    assert not verifier.verify(PREFIX + b45encode(cbor2.dumps(cbor2.CBORTag(18, item)))).accepted


@settings(max_examples=200, suppress_health_check=FIXTURES, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_single_byte_change_to_a_genuine_code_is_refused(verifier, make_code, position, flip):
    raw = bytearray(forge.raw_of(make_code()))
    raw[position % len(raw)] ^= flip
    result = verifier.verify(forge.text_of(bytes(raw)))
    assert not result.accepted


@settings(max_examples=150, suppress_health_check=FIXTURES, deadline=None)
@given(position=st.integers(min_value=4), char=st.sampled_from(ALPHABET))
def test_any_single_character_change_to_a_genuine_code_is_refused(verifier, make_code, position, char):
    code = make_code()
    i = 4 + position % (len(code) - 4)
    if code[i] == char:
        return
    assert not verifier.verify(code[:i] + char + code[i + 1:]).accepted


@pytest.fixture(scope="module")
def api_client(tmp_path_factory):
    app = create_app(make_settings(tmp_path_factory.mktemp("props")))
    return app.test_client()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=FIXTURES, deadline=None)
@given(body=st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries({"code": texts}, optional={"scene": st.sampled_from([*SCENES, "x", ""])}).map(json.dumps),
    st.binary(max_size=300),
))
def test_verify_endpoint_answers_200_or_4xx_never_5xx_and_never_accepts(api_client, body):
    response = api_client.post("/api/v1/verify", data=body, content_type="application/json")
    assert response.status_code in (200, 400, 413, 415, 422)  # 422: an unknown scene
    payload = response.get_json()
    assert isinstance(payload, dict)
    if response.status_code == 200:
        assert payload["accepted"] is False and payload["reason"] in {r.value for r in Reason}
    else:
        assert payload["error"] and payload["message"]
