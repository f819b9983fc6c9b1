"""The citycode command: JSON out, exit 0 accepted or success, 1 refused, 2 usage or input error."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

CITYCODE = str(Path(sys.executable).with_name("citycode"))


@pytest.fixture
def env(tmp_path):
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CITYCODE_")},
            "CITYCODE_HOME": str(tmp_path / "home")}


def run(env, *args, input=None):
    return subprocess.run([CITYCODE, *args], env=env, capture_output=True, text=True, input=input, timeout=60)


@pytest.fixture
def resident(env):
    result = run(env, "resident", "add", "--name", "Zhao Lei", "--birth-date", "1958-02-03")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_init_is_idempotent_and_creates_a_private_data_directory(env):
    first = run(env, "init")
    assert first.returncode == 0, first.stderr
    second = run(env, "init")
    assert json.loads(first.stdout)["demo_residents"] == json.loads(second.stdout)["demo_residents"]
    assert json.loads(second.stdout)["keys_created"] is False
    assert stat.S_IMODE(os.stat(env["CITYCODE_HOME"]).st_mode) == 0o700


def test_resident_add_prints_the_new_resident(resident):
    assert resident["name"] == "Zhao Lei" and resident["birth_date"] == "1958-02-03" and len(resident["id"]) == 16


@pytest.mark.parametrize("date", ["1958-13-01", "yesterday", "2999-01-01"])
def test_resident_add_with_a_bad_birth_date_exits_2(env, date):
    result = run(env, "resident", "add", "--birth-date", date)
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "input_error"


def test_issue_then_verify_text_image_and_batch(env, resident, tmp_path):
    png, svg = tmp_path / "c.png", tmp_path / "c.svg"
    issued = run(env, "code", "issue", resident["id"], "--count", "3", "--png", str(png), "--svg", str(svg))
    assert issued.returncode == 0, issued.stderr
    codes = issued.stdout.splitlines()
    assert len(codes) == 3 and all(c.startswith("CC1:") for c in codes)
    assert (tmp_path / "c-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "c-3.svg").read_text().lstrip().startswith(("<?xml", "<svg"))

    single = run(env, "verify", codes[0], "--scene", "bus")
    assert single.returncode == 0
    assert json.loads(single.stdout)["subject"] == resident["id"]

    image = run(env, "verify", "--image", str(tmp_path / "c-2.png"))
    assert image.returncode == 0 and json.loads(image.stdout)["accepted"]

    batch = tmp_path / "batch.txt"
    batch.write_text("\n".join([codes[0], "https://example.com", codes[1], codes[1]]) + "\n")
    out = run(env, "verify", "--batch", str(batch), "--scene", "bus")
    assert out.returncode == 1
    reasons = [json.loads(line)["reason"] for line in out.stdout.splitlines()]
    assert reasons == ["ok", "not_a_citycode", "ok", "replayed"]

    stdin = run(env, "verify", "--batch", "-", input=codes[2] + "\n")
    assert stdin.returncode == 0 and len(stdin.stdout.splitlines()) == 1


def test_verify_with_an_exported_trust_list_and_a_time(env, resident, tmp_path):
    trust, anchor = tmp_path / "trust.jwt", tmp_path / "anchor.pem"
    exported = run(env, "trust", "export", "-o", str(trust), "--anchor-out", str(anchor))
    assert exported.returncode == 0 and json.loads(exported.stdout)["keys"][0]["issuer"] == "city-id"
    code = run(env, "code", "issue", resident["id"]).stdout.strip()
    gate_env = {k: v for k, v in env.items() if k != "CITYCODE_HOME"} | {"CITYCODE_HOME": str(tmp_path / "empty")}
    ok = run(gate_env, "verify", "--trust", str(trust), "--anchor", str(anchor), code)
    assert ok.returncode == 0, ok.stderr
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    expired = run(gate_env, "verify", "--trust", str(trust), "--anchor", str(anchor), "--at", later, code)
    assert expired.returncode == 1 and json.loads(expired.stdout)["reason"] == "expired"
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * 86400))
    stale = run(gate_env, "verify", "--trust", str(trust), "--anchor", str(anchor), "--at", far, code)
    assert stale.returncode == 1 and json.loads(stale.stdout)["reason"] == "trust_list_expired"


def test_a_gate_without_the_anchor_is_told_to_give_it_and_nothing_is_created(env, resident, tmp_path):
    trust = tmp_path / "trust.jwt"
    assert run(env, "trust", "export", "-o", str(trust)).returncode == 0
    code = run(env, "code", "issue", resident["id"]).stdout.strip()
    gate_home = tmp_path / "gate"
    gate_env = {k: v for k, v in env.items() if k != "CITYCODE_HOME"} | {"CITYCODE_HOME": str(gate_home)}
    refused = run(gate_env, "verify", "--trust", str(trust), code)
    assert refused.returncode == 2 and "--anchor" in json.loads(refused.stderr)["message"]
    assert not gate_home.exists()


def test_rotation_keeps_old_codes_valid_and_lists_both_keys(env, resident):
    code = run(env, "code", "issue", resident["id"]).stdout.strip()
    rotated = run(env, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    keys = [k for k in json.loads(run(env, "keys", "list").stdout) if k["issuer"] == "city-id"]
    assert len(keys) == 2 and sum(k["retired_at"] is None for k in keys) == 1
    assert run(env, "verify", code).returncode == 0
    new = run(env, "code", "issue", resident["id"]).stdout.strip()
    assert json.loads(run(env, "verify", new).stdout)["kid"] == json.loads(rotated.stdout)["kid"]


@pytest.mark.parametrize(
    "args",
    [
        ["verify"],
        ["verify", "CC1:X", "--image", "x.png"],
        ["verify", "--scene", "moon", "CC1:X"],
        ["verify", "--at", "tomorrow", "CC1:X"],
        ["verify", "--image", "/nonexistent.png"],
        ["verify", "--batch", "/nonexistent.txt"],
        ["code", "issue", "nosuchresident"],
        ["keys", "rotate", "--issuer", "nobody"],
        ["nonsense"],
    ],
)
def test_usage_and_input_errors_exit_2_with_a_message(env, args):
    run(env, "init")
    result = run(env, *args)
    assert result.returncode == 2, result
    assert result.stderr.strip() and "Traceback" not in result.stderr


def test_wrongly_signed_trust_file_exits_2(env, tmp_path):
    run(env, "init")
    trust = tmp_path / "t.jwt"
    trust.write_text("eyJhbGciOiJub25lIn0.e30.")
    result = run(env, "verify", "--trust", str(trust), "CC1:X")
    assert result.returncode == 2 and json.loads(result.stderr)["error"] == "trust_list_error"


def test_bad_configuration_is_a_clear_error(env):
    result = run({**env, "CITYCODE_CODE_LIFETIME": "forever"}, "init")
    assert result.returncode == 2
    assert "CITYCODE_CODE_LIFETIME" in json.loads(result.stderr)["message"]


def test_rejected_code_exits_1(env):
    run(env, "init")
    result = run(env, "verify", "https://example.com")
    assert result.returncode == 1 and json.loads(result.stdout)["reason"] == "not_a_citycode"


def test_non_image_file_is_no_code_found(env, tmp_path):
    run(env, "init")
    bogus = tmp_path / "x.png"
    bogus.write_bytes(os.urandom(2000))
    result = run(env, "verify", "--image", str(bogus))
    assert result.returncode == 1 and json.loads(result.stdout)["reason"] == "no_code_found"


def test_every_domain_command_is_where_the_entry_point_looks_for_it() -> None:
    import importlib

    from codeservice.cli.main import DOMAIN_COMMANDS, main

    for name, module in DOMAIN_COMMANDS.items():
        assert name in [c.name for c in importlib.import_module(module).COMMANDS], (name, module)
    found = {c.name for m in set(DOMAIN_COMMANDS.values()) for c in importlib.import_module(m).COMMANDS}
    assert found == set(DOMAIN_COMMANDS)
    assert {"init", "serve", *DOMAIN_COMMANDS} <= set(main.list_commands(None))  # type: ignore[arg-type]


def test_a_gate_command_starts_without_the_web_app() -> None:
    import subprocess
    import sys

    probe = ("import sys; from click.testing import CliRunner; from codeservice.cli.main import main; "
             "CliRunner().invoke(main, ['gate', 'run', '--help']); "
             "print(sorted(m for m in sys.modules if m == 'codeservice.app' or m.startswith('codeservice.') and "
             "m.rsplit('.', 1)[-1] in ('api', 'pages', 'web', 'clerk', 'resident')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_batch_output_is_byte_for_byte_one_json_dumps_a_line(tmp_path, capsysbinary, monkeypatch):
    """verify --batch writes its lines in chunks: the bytes are those of one json.dumps(result.to_dict(),
    ensure_ascii=False) a line, as when every line had its own click.echo; and the chunks break anywhere."""
    import io

    from codeservice.cli import verify as verify_cli
    from issuers.codes import issue_code
    from issuers.keyring import IssuerInfo, Keyring
    from issuers.trustlist import sign_trust_list
    from sdk import MemoryReplayGuard, TrustList, Verifier, load_anchor
    from verifiers.scenes import SCENES

    keyring = Keyring(tmp_path / "keys")
    keyring.initialise([IssuerInfo("city-id", "City Identity Office", ("id",))])
    trust = TrustList.load(sign_trust_list(keyring, validity=3600), load_anchor(keyring.anchor_public_pem()))
    codes = [issue_code(keyring.signer("city-id"), "id", subject=os.urandom(10), lifetime=60) for _ in range(7)]
    lines = [*codes, codes[0], "https://example.com/é", "", "CC1:" + codes[1][4:-2], "\ufeff" + codes[2],
             "你好\x1b[31m", " " + codes[3] + " ", codes[4].lower(), "CC1:" + "A" * 3000] * 3
    text = "".join(line + ("\r\n" if i % 3 else "\n") for i, line in enumerate(lines))
    at = time.time()
    for chunk in (1, 2, 7, 100):
        monkeypatch.setattr(verify_cli, "BATCH_LINES", chunk)
        for scene in (None, SCENES["bus"]):
            expected_verifier = Verifier(trust, replay_guard=MemoryReplayGuard())
            expected = "".join(json.dumps(expected_verifier.verify(line, scene, at=at).to_dict(), ensure_ascii=False)
                               + "\n" for line in text.splitlines()).encode()
            capsysbinary.readouterr()
            verifier = Verifier(trust, replay_guard=MemoryReplayGuard())
            all_accepted = verify_cli.verify_batch(verifier, io.StringIO(text, newline=""), scene, at)
            assert capsysbinary.readouterr().out == expected
            assert all_accepted is False


def test_batch_from_a_pipe_answers_each_line_before_the_next_arrives(env, resident):
    codes = run(env, "code", "issue", resident["id"], "--count", "3").stdout.splitlines()
    process = subprocess.Popen([CITYCODE, "verify", "--batch", "-"], env=env, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdin is not None and process.stdout is not None
        for code in codes:  # a scanner: one code, then wait for its answer
            process.stdin.write(code + "\n")
            process.stdin.flush()
            assert select.select([process.stdout], [], [], 30)[0], "no answer while the next code waits"
            assert json.loads(process.stdout.readline())["accepted"]
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()




def test_result_line_is_json_dumps_of_to_dict():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from codeservice.cli import verify as verify_cli
    from sdk import Reason, Result

    assert verify_cli._LINE_IN_STEP  # the fast path is the one in use
    texts = st.text() | st.sampled_from(["", "é", "你好", "\x1b[31m", "\u2028", '"\\', "\ud800"])
    values = st.none() | texts | st.integers(-(2**70), 2**70) | st.booleans() | st.floats()
    fields = st.none() | st.dictionaries(texts, texts | st.integers() | st.booleans(), max_size=4)

    @settings(max_examples=500, deadline=None)
    @given(accepted=st.booleans() | st.none() | st.integers(0, 1), reason=st.sampled_from(list(Reason)),
           detail=texts, subject_id=st.none() | st.binary(max_size=12), others=st.lists(values, min_size=16,
                                                                                     max_size=16),
           disclosed=fields)
    def check(accepted, reason, detail, subject_id, others, disclosed):
        names = ["kind", "issued_at", "expires_at", "kid", "issuer", "code_id", "scene", "cert_id", "cert_type",
                 "holder", "status_age", "card_type", "fare_limit", "credential_id", "credential_expires_at",
                 "home_city"]
        result = Result(accepted=accepted, reason=reason, detail=detail, subject_id=subject_id, fields=disclosed,
                        **dict(zip(names, others, strict=True)))
        try:
            expected = json.dumps(result.to_dict(), ensure_ascii=False)
        except ValueError:  # an integer too long for str(): both refuse
            with pytest.raises(ValueError):
                verify_cli.result_line(result)
            return
        assert verify_cli.result_line(result) == expected

    check()
