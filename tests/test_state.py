"""Short-lived state and the shared replay guard, in-process and on Redis."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest

from codeservice.state import MemoryState, RedisState, StateError, StateReplayGuard, make_state
from sdk import Reason, Verifier
from verifiers.scenes import SCENES


@pytest.fixture
def state(state_redis_url):
    return make_state(state_redis_url, prefix=f"citycode-test:{uuid.uuid4().hex}:")


def test_add_once_is_true_only_for_the_first_caller(state):
    assert state.add_once("k", 10)
    assert not state.add_once("k", 10)
    assert state.add_once("other", 10)


def test_entries_expire(state):
    assert state.add_once("short", 0.2)
    time.sleep(0.35)
    assert state.add_once("short", 0.2)


def test_replay_guard_over_the_state_store_refuses_the_second_bus_scan(state, trust, make_code):
    verifier = Verifier(trust, replay_guard=StateReplayGuard(state))
    code = make_code()
    assert verifier.verify(code, SCENES["bus"]).accepted
    assert verifier.verify(code, SCENES["bus"]).reason is Reason.REPLAYED


def test_memory_state_forgets_expired_entries():
    now = [0.0]
    state = MemoryState(clock=lambda: now[0])
    for i in range(2048):
        state.add_once(f"k{i}", 1)
    now[0] = 5
    for i in range(1024):
        state.add_once(f"n{i}", 1)
    assert len(state._entries) <= 2048


def _race(url: str, prefix: str, key: str, out) -> None:  # runs in a child process
    out.put(RedisState(url, prefix).add_once(key, 30))


def test_redis_guard_admits_exactly_one_of_many_processes(redis_url):
    prefix = f"citycode-test:{uuid.uuid4().hex}:"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(redis_url, prefix, "same-code", out)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [out.get(timeout=5) for _ in procs]
    assert results.count(True) == 1 and results.count(False) == 7


def test_unreachable_redis_is_a_state_error_and_the_bus_refuses(trust, make_code):
    broken = RedisState("redis://127.0.0.1:1/0")
    with pytest.raises(StateError):
        broken.add_once("x", 1)
    assert broken.ping() is False
    verifier = Verifier(trust, replay_guard=StateReplayGuard(broken))
    assert verifier.verify(make_code(), SCENES["bus"]).reason is Reason.REPLAY_GUARD_UNAVAILABLE


def test_sqlite_replay_guard_of_the_sdk_survives_a_restart(tmp_path):
    from sdk import SqliteReplayGuard

    path = tmp_path / "guard.sqlite3"
    guard = SqliteReplayGuard(path)
    code_id = os.urandom(8)
    assert guard.first_use("bus", code_id, time.time() + 60)
    guard.close()
    again = SqliteReplayGuard(path)
    assert not again.first_use("bus", code_id, time.time() + 60)
    assert again.first_use("metro", code_id, time.time() + 60)


def test_counters_count_within_a_window_and_start_afresh(state):
    key = f"rate:{uuid.uuid4().hex}"
    assert [state.count(key, 0.3) for _ in range(3)] == [1, 2, 3]
    time.sleep(0.45)
    assert state.count(key, 0.3) == 1
