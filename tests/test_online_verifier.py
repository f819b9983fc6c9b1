"""Online verification takes its keys from a key source of public keys, never from the keyring's private side."""

from __future__ import annotations

import ast
import inspect

import verifiers.online
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.trustlist import KeyringKeys
from sdk import TrustList
from sdk.replay import MemoryReplayGuard
from verifiers.online import FixedKeys, OnlineVerifier


def test_the_online_verifier_imports_nothing_that_holds_private_keys() -> None:
    tree = ast.parse(inspect.getsource(verifiers.online))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.split(".")[0] == "issuers"}


def test_a_code_verifies_online_against_a_fixed_trust_list_of_public_keys(trust: TrustList, make_code) -> None:
    online = OnlineVerifier(FixedKeys(trust), MemoryReplayGuard(), leeway=30)
    result = online.verify(make_code(), "service-window")
    assert result.accepted and result.kind == "id"


def test_after_a_rotation_the_keyring_source_trusts_the_new_key(keyring: Keyring, make_code) -> None:
    online = OnlineVerifier(KeyringKeys(keyring, validity=3600), MemoryReplayGuard(), leeway=30)
    assert online.verify(make_code(), "service-window").accepted
    keyring.rotate("city-id", grace=120)
    assert online.verify(make_code(), "service-window").accepted  # signed with the new key


def test_an_issuer_unknown_to_the_key_source_is_refused_as_unknown_key(tmp_path, trust: TrustList) -> None:
    other = Keyring(tmp_path / "other")
    other.initialise([IssuerInfo("city-id", "Another city's identity office", ("id",))])
    code = issue_code(other.signer("city-id"), "id", subject=b"0123456789", lifetime=60)
    result = OnlineVerifier(FixedKeys(trust), MemoryReplayGuard(), leeway=30).verify(code, "service-window")
    assert not result.accepted and result.reason.value == "unknown_key"
