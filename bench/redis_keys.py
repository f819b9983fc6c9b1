"""What the shared state holds in Redis, key family by key family (docs/scaling.md, "Redis: keys and slots").

    python -m bench.redis_keys --redis redis+cluster://127.0.0.1:7000[,...]   # or redis://127.0.0.1:6379/0
    python -m bench.redis_keys --redis URL --keys 20000 --out FILE

Writes ``--keys`` keys of every family through the callers that write them in the service (the operators' shared
guard ``verifiers.transit.StateSharedGuard``, the online replay guard ``codeservice.state.StateReplayGuard``, the
rate limit's and the service points' counters) with the sizes real codes and ids have (a ride code's replay id: an
8-byte credential id and an 8-byte nonce; a pseudonymous id: 16 characters), under a throw-away prefix, then reports
per family: one key's ``MEMORY USAGE`` (``SAMPLES 0``), the used memory the whole family added divided by its
keys (the dictionary's and the expiry table's share included), how many slots the keys fell into, and the TTL the
service gives them. It deletes its keys at the end. Prints one JSON document; nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster, key_slot

from codeservice.state import RedisState, StateReplayGuard
from codeservice.venues.points import quota_key
from issuers.codes import CODE_ID_LENGTH
from issuers.rides import NONCE_LENGTH
from sdk.claims import subject_to_text
from sdk.points import KEEP
from verifiers.transit import StateSharedGuard

DAY = "2026-12-07"


def _used_memory(state: RedisState) -> int:
    client = state._redis()
    if isinstance(client, RedisCluster):
        info = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(node["used_memory"]) for node in info.values())
    return int(client.info("memory")["used_memory"])


def _families(state: RedisState) -> dict[str, tuple[str, Callable[[int], object]]]:
    guard, online = StateSharedGuard(state), StateReplayGuard(state)
    soon = time.time() + 90  # a ride code's life (60 s) and the leeway (30 s)

    def rider(i: int) -> str:
        return subject_to_text(i.to_bytes(10, "big"))

    def replay_id(i: int) -> bytes:  # credential id and nonce of a ride code
        return i.to_bytes(CODE_ID_LENGTH, "big") + os.urandom(NONCE_LENGTH)

    return {
        "gate-replay": ("a ride code spent at an online gate; until the code's end and the leeway (about 90 s)",
                        lambda i: guard.first_use("qd-metro:metro-gate", replay_id(i), soon)),
        "gate-inside (metro)": ("a rider inside the metro; until the exit, at most passback_seconds (4 h)",
                                lambda i: guard.enter("qd-metro:inside", rider(i), time.time() + 4 * 3600)),
        "gate-inside (scenic)": ("a visitor who entered a site today; 36 h",
                                 lambda i: guard.enter(f"laoshan:jufeng:{DAY}:entered", rider(i),
                                                       time.time() + 36 * 3600)),
        "gate-count": ("a site's entries of a day (one key a site and day); 36 h",
                       lambda i: guard.take(f"laoshan:site-{i}:{DAY}:capacity", 10**9, time.time() + 36 * 3600)),
        "replay": ("a code spent in a single-use scene verified online; until the code's end and the leeway",
                   lambda i: online.first_use("bus", os.urandom(CODE_ID_LENGTH), soon)),
        "rate": ("an API client's calls this minute; 60 s",
                 lambda i: state.count(f"rate:{{{i}}}", 60)),
        "quota": ("a resident's uses of a service point's service on a city day; 2 days",
                  lambda i: state.count(quota_key("oxygen", DAY, rider(i)), KEEP)),
    }


def run(url: str, keys: int) -> dict[str, Any]:
    prefix = f"cb{uuid.uuid4().hex[:6]}:"  # as long as the service's "citycode:", so that the sizes are its
    state = RedisState(url, prefix)
    client = state._redis()
    families: dict[str, Any] = {}
    try:
        state.count("warm-up:{script}", 1)  # the count script in every master's cache before anything is measured
        client.delete(state.key("warm-up:{script}"))
        for name, (what, write) in _families(state).items():
            used = _used_memory(state)
            for i in range(keys):
                write(i)
            added = _used_memory(state) - used
            family = list(client.scan_iter(match=prefix + "*", count=1000))  # the families before are deleted
            sample = family[len(family) // 2]
            families[name] = {
                "what": what,
                "example": sample.decode().removeprefix(prefix),
                "memory_usage_bytes": int(client.memory_usage(sample, samples=0)),
                "used_memory_per_key": round(added / keys, 1),
                "keys": keys,
                "slots": len({key_slot(k) for k in family}),
                "ttl_s": round(client.pttl(sample) / 1000),
            }
            for k in family:
                client.delete(k)
    finally:
        for k in list(client.scan_iter(match=prefix + "*", count=1000)):
            client.delete(k)
    return {"redis": "cluster" if state.cluster else "single", "prefix": "citycode: (9 characters)",
            "families": families}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_keys", description=__doc__.split("\n")[0])
    parser.add_argument("--redis", required=True, help="redis://host:port/db or redis+cluster://host:port[,...]")
    parser.add_argument("--keys", type=int, default=10_000, help="keys written per family (default 10000)")
    parser.add_argument("--out", help="write the JSON document here too")
    args = parser.parse_args(argv)
    if args.keys < 10:
        parser.error("--keys must be at least 10")
    report = run(args.redis, args.keys)
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
