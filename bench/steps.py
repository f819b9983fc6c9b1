"""What one step of the online service costs in CPU, in process (Flask's test client, no HTTP server), on
PostgreSQL and Redis: this process's CPU, the PostgreSQL backends' and Redis's, per request.

    python -m bench.steps [--count 300]

The baseline in the same run is ``GET /api/v1/health`` (one database and one Redis round trip). Process CPU
barely changes with other load on the machine, where requests a second do: this is the figure to profile
against (``python -m bench.steps --profile approve`` writes a cProfile of that phase). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy import select

from bench.http import ITEMS, cpu_of
from codeservice.app import create_app
from codeservice.config import Settings
from codeservice.identity.models import Resident
from codeservice.identity.residents import list_residents
from codeservice.services import Services

CITYCODE = str(Path(sys.executable).with_name("citycode"))
PHASES = ("health", "verify", "request", "approve", "fetch")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--postgres", default="postgresql+psycopg://127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--profile", choices=PHASES, help="write a cProfile of this phase to PHASE.pstats")
    args = parser.parse_args()

    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    dbname = f"citycode_steps_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    home = tempfile.mkdtemp(prefix="citycode-steps-")
    env = {**os.environ, "CITYCODE_HOME": home, "CITYCODE_DATABASE_URL": args.postgres.rsplit("/", 1)[0] + "/" + dbname,
           "CITYCODE_REDIS_URL": args.redis, "CITYCODE_REDIS_PREFIX": f"steps:{uuid.uuid4().hex}:"}
    try:
        subprocess.run([CITYCODE, "init"], env=env, check=True, capture_output=True)
        clerk = json.loads(subprocess.run(
            [CITYCODE, "client", "add", "--role", "clerk", "--name", "Bench clerk", "--office", "central-hall-w3",
             "--rate", "100000"], env=env, check=True, capture_output=True, text=True).stdout)
        out = run(env, clerk["key"], args.count, admin, dbname, redis.Redis.from_url(args.redis), args.profile)
        print(json.dumps(out, indent=2))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        admin.dispose()


def run(env: dict[str, str], key: str, n: int, admin: sa.Engine, dbname: str, state: redis.Redis,
        profile: str | None) -> dict[str, Any]:
    settings = Settings.from_env(env)
    app = create_app(settings, initialise=False)
    services: Services = app.extensions["citycode"]
    with services.db.session() as s:
        elder = list_residents(s)[0].pid
    clerk = app.test_client()
    auth = {"Authorization": f"Bearer {key}"}

    def backends() -> float:
        with admin.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": dbname})
            return sum(cpu_of(pid) for (pid,) in pids)

    def redis_cpu() -> float:
        info = state.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])

    out: dict[str, Any] = {"benchmark": "CPU a step, in process", "command": "python -m bench.steps " +
                           " ".join(sys.argv[1:]), "count": n}

    def phase(name: str, step: Callable[[Any], None], jobs: list[Any]) -> None:
        for job in jobs[:20]:  # warm: prepared statements, caches
            step(job)
        jobs = jobs[20:]
        profiler = cProfile.Profile() if profile == name else None
        cpu, db, kv, wall = time.process_time(), backends(), redis_cpu(), time.perf_counter()
        if profiler:
            profiler.enable()
        for job in jobs:
            step(job)
        if profiler:
            profiler.disable()
            profiler.dump_stats(f"{name}.pstats")
        per = 1000 / len(jobs)
        out[name] = {"python_ms": round((time.process_time() - cpu) * per, 2),
                     "postgres_ms": round((backends() - db) * per, 2),
                     "redis_ms": round((redis_cpu() - kv) * per, 2),
                     "wall_ms": round((time.perf_counter() - wall) * per, 2)}

    def expect(response: Any, status: int) -> Any:
        if response.status_code != status:
            raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:200]}")
        return response.get_json()

    phase("health", lambda _: expect(clerk.get("/api/v1/health"), 200), list(range(n + 20)))
    codes = [services.issue_identity_code(elder) for _ in range(n + 20)]
    phase("verify", lambda code: expect(clerk.post("/api/v1/verify", json={"code": code, "scene": "service-window"}),
                                        200), codes)  # anonymous: a clerk's key is refused there
    ids: list[str] = []
    codes = [services.issue_identity_code(elder) for _ in range(n + 20)]
    phase("request", lambda code: ids.append(expect(clerk.post(
        "/api/v1/consent/requests", json={"code": code, "purpose": "elderly allowance application", "items": ITEMS},
        headers=auth), 201)["id"]), codes)
    resident = app.test_client()
    page = resident.get("/signin").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    if csrf is None:
        raise RuntimeError("no sign-in form")
    resident.post("/signin/dev", data={"csrf": csrf.group(1), "resident": elder})
    phase("approve", lambda rid: expect(resident.post(f"/api/v1/me/consent-requests/{rid}",
                                                      json={"decision": "approve"}), 200), list(ids))
    phase("fetch", lambda rid: expect(clerk.post(f"/api/v1/consent/requests/{rid}/fetch", headers=auth), 200),
          list(ids))
    out["one_statement"] = statement_costs(services, elder)
    base = out["health"]["python_ms"] + out["health"]["postgres_ms"]
    for name in PHASES[1:]:
        out[name]["vs_health_cpu"] = round(base / (out[name]["python_ms"] + out[name]["postgres_ms"]), 3)
    services.db.dispose()
    return out


def statement_costs(services: Services, pid: str, rounds: int = 2000) -> dict[str, float]:
    """ms of Python for one SELECT of a resident by id, inside an open transaction: on a bare psycopg cursor, as
    a SQLAlchemy Core ``select``, and as the ORM loads it (what a step pays a statement)."""
    out: dict[str, float] = {}
    with services.db.session() as s:
        cursor = s.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        core = select(Resident.id, Resident.frozen).where(Resident.pid == pid)
        orm = select(Resident).where(Resident.pid == pid)
        for name, one in (
            ("psycopg_cursor_ms", lambda: cursor.execute("SELECT id, frozen FROM residents WHERE pid = %s",
                                                         (pid,)).fetchall()),
            ("sqlalchemy_core_ms", lambda: s.execute(core).all()),
            ("sqlalchemy_orm_ms", lambda: s.scalars(orm).all()),
        ):
            for _ in range(50):
                one()
            start = time.process_time()
            for _ in range(rounds):
                one()
            out[name] = round((time.process_time() - start) * 1000 / rounds, 3)
    return out


if __name__ == "__main__":
    main()
