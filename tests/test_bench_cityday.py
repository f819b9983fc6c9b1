"""bench/cityday.py at its --quick size as a correctness test, against real PostgreSQL and Redis under
gunicorn: every generated record stored once, the retries after a lost answer and the copies of a code answered
as duplicates, and every operator's statement equal to the bench's independent recomputation (totals_match).
No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def _city_day(tmp_path: Path, redis_url: str, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.cityday", "--quick", "--taps", "2500", "--gates", "40", "--concurrency", "4",
         "--workers", "2", "--threads", "2", "--postgres", POSTGRES_URL, "--redis", redis_url, "--out", str(out),
         "--cache", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert json.loads(run.stdout) == doc
    return doc


@pytest.mark.slow
def test_a_quick_city_day_clears_to_the_independent_recomputation(postgres_database, redis_url, tmp_path):
    doc = _city_day(tmp_path, redis_url, "first")
    assert doc["codes_from_cache"] is False
    assert doc["totals_match"] is True and "problems" not in doc
    assert set(doc["operators"]) == {"qd-metro", "xh-metro", "qd-bus", "laoshan"}
    for key in ("taps", "gates", "phones", "upload_s", "upload_records_per_s", "raw_verify_us", "signatures_verified",
                "floor_records_per_s", "clearing_s", "total_s", "total_s_at_60us", "peak_rss_mb"):
        assert key in doc, key
    assert doc["taps"] >= 2500 and doc["gates"] > 8 and doc["phones"] > 100
    assert doc["retries"]["resent"] > 0 and doc["retries"]["code_copies"] > 0
    metro = doc["statements"]["qd-metro"]["by_status"]
    assert metro["paired"] > 0 and metro["unpaired_entry"] > 0 and metro["unpaired_exit"] > 0
    assert all(statement["duplicates"] >= 0 for statement in doc["statements"].values())
    assert sum(statement["duplicates"] for statement in doc["statements"].values()) == doc["retries"]["code_copies"]


@pytest.mark.slow
def test_a_second_city_day_takes_its_codes_from_the_cache_and_still_clears_to_the_recomputation(
        postgres_database, redis_url, tmp_path):
    first = _city_day(tmp_path, redis_url, "first")
    again = _city_day(tmp_path, redis_url, "again")
    assert first["codes_from_cache"] is False and again["codes_from_cache"] is True
    assert again["totals_match"] is True and again["records"] == first["records"]
    assert again["statements"]["qd-bus"]["charged_total"] == first["statements"]["qd-bus"]["charged_total"]


class _Evidence:
    """A stand-in for the service's evidence verifier: accepts exactly the codes it was given."""

    def __init__(self, made: list[tuple[str, str, str, str]]) -> None:
        self.known = {code: (account, credential_id, code_id) for code, account, credential_id, code_id in made}

    def evidence(self, code: str, *, at: float) -> SimpleNamespace:
        found = self.known.get(code)
        return SimpleNamespace(accepted=found is not None, subject=found and found[0],
                               credential_id=found and found[1], code_id=found and found[2])


def test_a_cached_entry_that_was_changed_truncated_or_does_not_verify_is_not_used(tmp_path):
    from bench.cityday import CodeCache

    cache = CodeCache(tmp_path / "cache")
    made = [(f"CC1:CODE{n}", f"ACCOUNT{n % 7}", f"{n % 7:016x}", f"{n:048x}") for n in range(500)]
    todo = [(n % 7, 1000.0 + n) for n in range(500)]
    cache.save("k1", made)
    assert cache.load("k1", todo, _Evidence(made)) == made
    assert cache.load("k2", todo, _Evidence(made)) is None  # another day's inputs: not found
    assert cache.load("k1", todo[:-1], _Evidence(made)) is None  # another number of taps
    assert cache.load("k1", todo, _Evidence(made[:-1])) is None  # the last code does not verify
    entry = next((tmp_path / "cache").glob("codes-k1.tsv"))
    text = entry.read_text()
    entry.write_text(text.replace("CC1:CODE250\t", "CC1:CODE251\t", 1))
    assert cache.load("k1", todo, _Evidence(made)) is None  # changed after it was written
    entry.write_text(text[: len(text) // 2])
    assert cache.load("k1", todo, _Evidence(made)) is None  # not written to its end


def test_a_day_larger_than_the_memory_available_is_refused_before_it_starts(monkeypatch, capsys):
    from bench import cityday

    monkeypatch.setattr(cityday, "available_mb", lambda: 4096)
    started = []
    monkeypatch.setattr(cityday, "Environment", lambda *a, **k: started.append(a))  # must not be reached
    assert cityday.main(["--taps", "5000000", "--postgres", "postgresql+psycopg://127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert "5,000,000 taps needs about " in err and "4,096 MB available" in err and "--no-memory-check" in err
    assert started == []


def test_the_memory_estimate_grows_with_the_day_and_a_small_day_fits():
    from bench import cityday

    assert cityday.memory_needed_mb(6000) < 2048 < cityday.memory_needed_mb(5_000_000)
    assert cityday.memory_needed_mb(2_000_000) < cityday.memory_needed_mb(4_000_000)
