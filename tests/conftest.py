"""Shared fixtures: real keys, and the storage and state layers on the embedded defaults and on the
real servers (PostgreSQL on 127.0.0.1:5432, Redis on 127.0.0.1:6379).

A test that needs a server skips when it is unreachable, except under CI=true, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from codeservice.config import Settings
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.trustlist import sign_trust_list
from sdk import TrustList, Verifier, load_anchor

POSTGRES_URL = os.environ.get("CITYCODE_TEST_POSTGRES_URL", "postgresql+psycopg://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CITYCODE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"
IDENTITY = IssuerInfo("city-id", "City Identity Office", ("id",))


def server_unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} unreachable: {exc.__class__.__name__}: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI=true: tests needing servers must run)")
    pytest.skip(message)


# -- keys and verification --------------------------------------------------------------------
@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    ring = Keyring(tmp_path / "keys")
    ring.initialise([IDENTITY])
    return ring


@pytest.fixture
def trust_token(keyring: Keyring) -> str:
    return sign_trust_list(keyring, validity=7 * 24 * 3600)


@pytest.fixture
def trust(keyring: Keyring, trust_token: str) -> TrustList:
    return TrustList.load(trust_token, load_anchor(keyring.anchor_public_pem()))


@pytest.fixture
def verifier(trust: TrustList) -> Verifier:
    return Verifier(trust, leeway=30)


@pytest.fixture
def subject() -> bytes:
    return os.urandom(10)


@pytest.fixture
def make_code(keyring: Keyring, subject: bytes) -> Callable[..., str]:
    def make(lifetime: int = 60, now: float | None = None, sub: bytes | None = None) -> str:
        return issue_code(keyring.signer("city-id"), "id", subject=sub or subject, lifetime=lifetime, now=now)

    return make


# -- real servers -------------------------------------------------------------------------------
@contextlib.contextmanager
def throwaway_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database named *prefix* and a random suffix, dropped afterwards
    (a failure, not a skip, under CI when the server is unreachable: ``server_unavailable``)."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        server_unavailable("PostgreSQL", exc)
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test process, dropped at the end."""
    with throwaway_postgres_database("citycode_test") as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        server_unavailable("Redis", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'citycode.sqlite3'}"
    return str(request.getfixturevalue("postgres_database"))


def _free_port_pair() -> int:
    """A loopback port P with P + 10000 free as well (a cluster node's bus port)."""
    import random
    import socket

    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port pair")


@contextlib.contextmanager
def redis_cluster(directory: Path, masters: int = 3) -> Iterator[str]:
    """A Redis Cluster of *masters* masters, no replicas, on free loopback ports, its files in *directory*; yields
    its ``redis+cluster://`` URL and stops the servers afterwards."""
    import shutil
    import subprocess
    import time

    import redis

    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        raise RuntimeError("redis-server and redis-cli are needed for the Redis Cluster")
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    try:
        for i in range(masters):
            port = _free_port_pair()
            node = directory / str(port)
            node.mkdir()
            procs.append(subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", str(node / "nodes.conf"), "--cluster-node-timeout", "5000",
                 "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(node)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    redis.Redis(port=port, socket_connect_timeout=0.5).ping()
                    break
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on port {port} did not start") from None
                    time.sleep(0.05)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in ports:
            while b"cluster_state:ok" not in subprocess.run([cli, "-p", str(port), "cluster", "info"],
                                                             capture_output=True, timeout=10).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster is not ok at port {port}")
                time.sleep(0.05)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-master Redis Cluster on loopback ports for the whole session (started only when a test asks)."""
    try:
        cluster = redis_cluster(tmp_path_factory.mktemp("redis-cluster"))
        url = cluster.__enter__()
    except Exception as exc:
        server_unavailable("Redis Cluster", exc)
    try:
        yield url
    finally:
        cluster.__exit__(None, None, None)


#: The state stores: in-process, one Redis, a three-master Redis Cluster (``state_redis_url``'s parameters).
STATE_STORES = ["memory", "redis", "cluster"]
#: The cluster is not a default parameter of every app test (that would add half again to the suite's time): a test
#: of the shared state that takes ``app`` is marked ``@with_cluster`` and runs on the four usual combinations and on
#: PostgreSQL with the Redis Cluster (as a deployment pairs them).
with_cluster = pytest.mark.parametrize(
    "database_url, state_redis_url",
    [("sqlite", "memory"), ("sqlite", "redis"), ("postgresql", "memory"), ("postgresql", "redis"),
     ("postgresql", "cluster")],
    indirect=True, ids=["sqlite-memory", "sqlite-redis", "postgresql-memory", "postgresql-redis",
                        "postgresql-cluster"])


@pytest.fixture(params=["memory", "redis"])
def state_redis_url(request: pytest.FixtureRequest) -> str | None:
    """None for the in-process state, else the Redis URL (one Redis, or a Redis Cluster's)."""
    if request.param == "memory":
        return None
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    return str(request.getfixturevalue("redis_url"))


def clear_database(engine) -> None:
    """Delete every row (children first), so that tests sharing one PostgreSQL database stay apart."""
    from codeservice.tables import metadata

    with engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def make_settings(home: Path, database_url: str | None = None, redis_url: str | None = None, **overrides) -> Settings:
    env = {"CITYCODE_HOME": str(home)}
    if database_url:
        env["CITYCODE_DATABASE_URL"] = database_url
    if redis_url:
        env["CITYCODE_REDIS_URL"] = redis_url
        env["CITYCODE_REDIS_PREFIX"] = f"citycode-test:{uuid.uuid4().hex}:"
    for key, value in overrides.items():
        env[f"CITYCODE_{key.upper()}"] = str(value)
    return Settings.from_env(env)


# -- the app on each storage and state combination ------------------------------------------------
def _app(home: Path, database_url: str, redis_url: str | None):  # type: ignore[no-untyped-def]
    from codeservice.app import create_app

    app = create_app(make_settings(home, database_url, redis_url))
    yield app
    services = app.extensions["citycode"]
    clear_database(services.db.engine)
    services.db.dispose()


@pytest.fixture
def app(tmp_path: Path, database_url: str, state_redis_url: str | None):  # type: ignore[no-untyped-def]
    """The app with demo data, on SQLite and PostgreSQL, each with in-process state and Redis."""
    yield from _app(tmp_path / "home", database_url, state_redis_url)


@pytest.fixture
def web_app(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    """The app on SQLite and PostgreSQL with in-process state (pages that do not touch shared state)."""
    yield from _app(tmp_path / "home", database_url, None)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


class EnglishClient(FlaskClient):
    """A test client whose browser asks for English (the pages' default is Chinese)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en-GB,en;q=0.9"


def in_english(app):  # type: ignore[no-untyped-def]
    """*app*, whose test clients ask for the English pages (tests that read the pages' English wording)."""
    app.test_client_class = EnglishClient
    return app


def verifier_key(app, rate_per_minute: int = 100_000) -> str:  # type: ignore[no-untyped-def]
    """A verifier's API key on *app* (made once an app): POST /api/v1/verify tells only accepted-or-not and why to
    an anonymous caller, the whole result to a verifier's key."""
    key = app.extensions.get("citycode_test_verifier_key")
    if key is None:
        from codeservice.clients.service import add_api_client  # lazy: only the tests that verify online need it

        with app.extensions["citycode"].db.session() as session:
            _, key = add_api_client(session, "Test verifier", "verifier", rate_per_minute=rate_per_minute)
        app.extensions["citycode_test_verifier_key"] = key
    return str(key)


def as_verifier(app) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The headers of a call made with :func:`verifier_key`."""
    return {"Authorization": f"Bearer {verifier_key(app)}"}
