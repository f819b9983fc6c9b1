"""Short-lived state and the shared replay guard, in-process, on Redis and on a three-master Redis Cluster."""

from __future__ import annotations

import multiprocessing
import os
import time
import uuid

import pytest
from redis.cluster import key_slot

from codeservice.state import (
    MemoryState,
    RedisState,
    StateError,
    StateReplayGuard,
    cluster_nodes,
    make_state,
    same_slot,
)
from sdk import Reason, Verifier
from tests.conftest import STATE_STORES
from verifiers.scenes import SCENES


@pytest.fixture(params=STATE_STORES)
def state(request):
    url = None if request.param == "memory" else request.getfixturevalue(
        "redis_cluster_url" if request.param == "cluster" else "redis_url")
    return make_state(url, prefix=f"citycode-test:{uuid.uuid4().hex}:")




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
    # on one Redis only: a key's SET NX is as atomic on a cluster's master, and eight spawned processes take
    # half a minute on a loaded machine; the cluster's guard is the `state` tests' and the gates'.
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


# -- Redis Cluster: keys and slots, failing closed -------------------------------------------------------------
class _Recording:
    """A state store that notes every key it is given, over a real one."""

    def __init__(self, inner) -> None:
        self.inner, self.keys = inner, []

    def add_once(self, key, ttl):
        self.keys.append(key)
        return self.inner.add_once(key, ttl)

    def count(self, key, window):
        self.keys.append(key)
        return self.inner.count(key, window)

    def discard(self, key):
        self.keys.append(key)
        return self.inner.discard(key)


def _tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1:key.index("}", start)]


def test_every_key_names_one_hash_tag_and_one_riders_passback_keys_share_a_slot(redis_cluster_url):
    from codeservice.venues.points import quota_key
    from verifiers.transit import StateSharedGuard

    state = _Recording(RedisState(redis_cluster_url, f"citycode-test:{uuid.uuid4().hex}:"))
    guard, code_id, rider, until = StateSharedGuard(state), os.urandom(16), "abcdefghijklmnop", time.time() + 60
    assert guard.first_use("qd-metro:metro-gate", code_id, until)
    assert guard.enter("qd-metro:inside", rider, until) and guard.enter("qd-metro2:inside", rider, until)
    guard.leave("qd-metro:inside", rider)
    assert guard.take("laoshan:jufeng:2026-12-07:capacity", 10, until)
    assert StateReplayGuard(state).first_use("bus", code_id, until)
    state.count(quota_key("oxygen", "2026-12-07", rider), 60)
    assert [_tag(k) for k in state.keys] == [code_id.hex(), rider, rider, rider, "laoshan:jufeng:2026-12-07:capacity",
                                             code_id.hex(), rider]
    assert all(k.count("{") == 1 and k.count("}") == 1 for k in state.keys)
    prefixed = [state.inner.key(k) for k in state.keys if _tag(k) == rider]
    assert len(prefixed) == 4 and same_slot(prefixed)
    assert len({key_slot(k.encode()) for k in prefixed}) == 1


def test_keys_of_one_script_share_a_slot_and_a_script_across_slots_is_refused_before_it_is_sent(redis_cluster_url):
    state = RedisState(redis_cluster_url, f"citycode-test:{uuid.uuid4().hex}:")
    together = [state.key("gate-inside:{rider-1}:qd-metro:inside"), state.key("gate-inside:{rider-1}:laoshan:x")]
    assert key_slot(together[0].encode()) == key_slot(together[1].encode())
    both = "return redis.call('EXISTS', KEYS[1]) + redis.call('EXISTS', KEYS[2])"
    assert state._script(both, together, []) == 0
    apart = [state.key("gate-inside:{rider-1}:x"), state.key("gate-inside:{rider-2}:x")]
    assert key_slot(apart[0].encode()) != key_slot(apart[1].encode())
    with pytest.raises(StateError, match="share a hash slot"):
        state._script(both, apart, [])
    import redis
    from redis.exceptions import RedisClusterException

    with pytest.raises((redis.RedisError, RedisClusterException)):  # what the cluster's client does without it
        state._redis().eval(both, 2, *apart)


def test_on_one_redis_too_a_script_across_slots_is_refused_so_that_it_never_reaches_a_cluster(redis_url):
    state = RedisState(redis_url, f"citycode-test:{uuid.uuid4().hex}:")
    both = "return redis.call('EXISTS', KEYS[1]) + redis.call('EXISTS', KEYS[2])"
    assert state._script(both, [state.key("a:{r}:1"), state.key("a:{r}:2")], []) == 0
    with pytest.raises(StateError, match="share a hash slot"):
        state._script(both, [state.key("a:{r1}:1"), state.key("a:{r2}:1")], [])


def test_an_unreachable_cluster_is_a_state_error_and_the_bus_refuses(trust, make_code):
    broken = RedisState("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    with pytest.raises(StateError):
        broken.add_once("replay:{x}", 1)
    with pytest.raises(StateError):
        broken.count("rate:{x}", 1)
    assert broken.ping() is False
    verifier = Verifier(trust, replay_guard=StateReplayGuard(broken))
    assert verifier.verify(make_code(), SCENES["bus"]).reason is Reason.REPLAY_GUARD_UNAVAILABLE


def test_a_slot_that_moves_mid_operation_and_cannot_be_followed_fails_closed(redis_cluster_url):
    """The slot's master starts migrating it to another master that does not take it (``MIGRATING`` without
    ``IMPORTING``): a new key is sent on with ``ASK``, sent back with ``MOVED``, and the operation is refused."""
    import redis

    state = RedisState(redis_cluster_url, f"citycode-test:{uuid.uuid4().hex}:")
    assert state.add_once("gate-replay:{warm-up}:x", 30)
    key = "gate-replay:{moving}:x"
    slot = key_slot(state.key(key).encode())
    owner = state._redis().get_node_from_key(state.key(key))
    masters = {redis.Redis(host=host, port=port).execute_command("CLUSTER MYID").decode(): (host, port)
               for host, port in cluster_nodes(redis_cluster_url)}
    owner_id = next(i for i, address in masters.items() if address == (owner.host, owner.port))
    other_id = next(i for i in masters if i != owner_id)
    source = redis.Redis(host=owner.host, port=owner.port)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", other_id)
    try:
        with pytest.raises(StateError):
            state.add_once(key, 30)
        with pytest.raises(StateError):
            state.count(key, 30)
    finally:
        source.execute_command("CLUSTER SETSLOT", slot, "STABLE")
    assert state.add_once(key, 30) and not state.add_once(key, 30)
