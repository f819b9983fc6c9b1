"""Base45 against the examples of RFC 9285 and under random input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sdk.base45 import Base45Error, b45decode, b45encode


@pytest.mark.parametrize(
    ("raw", "text"),
    [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0"), (b"", "")],
)
def test_rfc_9285_examples(raw, text):
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@pytest.mark.parametrize("text", ["GGW", "GGW00", "a", "ABCD", "AB\u00e9", "::::", "ZZZ"])
def test_invalid_base45_is_an_error(text):
    with pytest.raises(Base45Error):
        b45decode(text)


@given(st.binary(max_size=600))
def test_round_trip(data):
    assert b45decode(b45encode(data)) == data


@given(st.text(max_size=200))
def test_decoding_arbitrary_text_raises_only_base45_error(text):
    with contextlib.suppress(Base45Error):
        b45decode(text)
