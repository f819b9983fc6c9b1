"""Settings from the environment. A bad value is a clear error at start, never a surprise later."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from codeservice.state import CLUSTER_SCHEME, cluster_nodes
from sdk import sm2
from sdk.citytime import zone
from sdk.federation import CITY_ID


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True)
class OIDCSettings:
    """The city's identity platform (OpenID Connect, authorisation code flow with PKCE)."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False, default="")
    scopes: str = "openid"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    redis_url: str | None
    redis_prefix: str = "citycode:"
    code_lifetime: int = 60
    leeway: int = 30
    trust_validity: int = 7 * 24 * 3600
    dev_signin: bool = True
    secure_cookies: bool = False
    oidc: OIDCSettings | None = None
    demo_data: bool = True
    #: Base URL under which this service is reached; names the status lists (their ``sub``).
    public_url: str = "http://127.0.0.1:8000"
    status_list_size: int = 131072
    status_ttl: int = 300
    status_validity: int = 7 * 24 * 3600
    #: Ride codes: how long a credential authorises a phone offline, how long one code is valid, how often
    #: the page makes a new one, and the per-ride fare limit of a new transit account (cents).
    ride_credential_hours: int = 24
    ride_code_validity: int = 60
    ride_refresh: int = 30
    ride_fare_limit: int = 2000
    #: Minutes a resident has to answer a clerk's consent request before it expires.
    consent_answer_minutes: int = 5
    #: Minutes after an approval within which the clerk may fetch, once.
    consent_fetch_minutes: int = 3
    #: The city's time zone (IANA name): every time a page shows is in it. ``sdk.citytime`` reads the same
    #: variable for the dates of certificates and the operating day.
    city_tz: str = "Asia/Shanghai"
    #: What the keys ``citycode init`` makes sign with: ``ES256`` (default) or ``SM2`` (SM2 with SM3), the anchor's
    #: and every issuer's, but those named in ``issuer_signing_algs`` (issuer id, algorithm).
    signing_alg: str = "ES256"
    issuer_signing_algs: tuple[tuple[str, str], ...] = ()
    #: This city's id in federations (``CITYCODE_CITY``): what its federation statement is issued by, and
    #: what other cities name it by (docs/federation.md).
    city: str = "demo-city"
    #: Months a printed card (实体卡) lives from the day a service window prints it.
    card_months: int = 24
    #: Days a venue check-in is kept before it is deleted (the city's setting; no venue can extend it).
    checkin_retention_days: int = 14

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def key_grace(self) -> int:
        """How long a retired key stays trusted: the longest a code it signed can still pass."""
        return self.code_lifetime + 2 * self.leeway

    def grace_for(self, issuer: str) -> int:
        """The grace of a rotated key of *issuer*: a ride credential lives for hours, other codes a minute."""
        if issuer == "city-transit":
            return self.ride_credential_hours * 3600 + self.ride_code_validity + 2 * self.leeway
        if issuer == "city-card":  # a printed card lives for months: its key stays trusted while any card does
            return self.card_months * 31 * 86400 + 2 * self.leeway
        if issuer == "city-venues":  # a posted venue code lives up to a year (codeservice/venues/service.py)
            return 366 * 86400 + 2 * self.leeway
        return self.key_grace

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("CITYCODE_HOME") or "instance").resolve()
        database_url = env.get("CITYCODE_DATABASE_URL") or f"sqlite:///{home / 'citycode.sqlite3'}"
        if "://" not in database_url:
            raise ConfigError(f"CITYCODE_DATABASE_URL is not a database URL: {database_url!r}")
        redis_url = env.get("CITYCODE_REDIS_URL") or None
        redis_prefix = env.get("CITYCODE_REDIS_PREFIX") or "citycode:"
        if redis_url is not None and redis_url.startswith(CLUSTER_SCHEME):
            try:
                cluster_nodes(redis_url)
            except ValueError as exc:
                raise ConfigError(f"CITYCODE_REDIS_URL: {exc}, got {redis_url!r}") from None
            if "{" in redis_prefix or "}" in redis_prefix:
                raise ConfigError("CITYCODE_REDIS_PREFIX must not contain { or } on a Redis Cluster (the keys' hash "
                                  f"tags would be the prefix's), got {redis_prefix!r}")
        elif redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("CITYCODE_REDIS_URL must start with redis://, rediss://, unix:// or redis+cluster://, "
                              f"got {redis_url!r}")
        oidc = None
        if env.get("CITYCODE_OIDC_ISSUER"):
            client_id = env.get("CITYCODE_OIDC_CLIENT_ID")
            if not client_id:
                raise ConfigError("CITYCODE_OIDC_CLIENT_ID is required when CITYCODE_OIDC_ISSUER is set")
            oidc = OIDCSettings(
                issuer=env["CITYCODE_OIDC_ISSUER"].rstrip("/"),
                client_id=client_id,
                client_secret=env.get("CITYCODE_OIDC_CLIENT_SECRET", ""),
                scopes=env.get("CITYCODE_OIDC_SCOPES") or "openid",
            )
        ride_validity = _int(env, "CITYCODE_RIDE_CODE_VALIDITY", 60, 10, 300)
        ride_refresh = _int(env, "CITYCODE_RIDE_REFRESH", min(30, ride_validity // 2), 5, 300)
        if ride_refresh >= ride_validity:
            raise ConfigError(f"CITYCODE_RIDE_REFRESH ({ride_refresh} s) must be shorter than "
                              f"CITYCODE_RIDE_CODE_VALIDITY ({ride_validity} s)")
        city_tz = env.get("CITYCODE_CITY_TZ") or "Asia/Shanghai"
        try:
            zone(city_tz)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        signing_alg, issuer_algs = _signing_algs(env)
        return cls(
            home=home,
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            code_lifetime=_int(env, "CITYCODE_CODE_LIFETIME", 60, 5, 3600),
            leeway=_int(env, "CITYCODE_LEEWAY", 30, 0, 600),
            trust_validity=_int(env, "CITYCODE_TRUST_VALIDITY", 7 * 24 * 3600, 3600, 90 * 24 * 3600),
            dev_signin=_bool(env, "CITYCODE_DEV_SIGNIN", oidc is None),
            secure_cookies=_bool(env, "CITYCODE_SECURE_COOKIES", False),
            oidc=oidc,
            demo_data=_bool(env, "CITYCODE_DEMO_DATA", True),
            public_url=(env.get("CITYCODE_PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            status_list_size=_int(env, "CITYCODE_STATUS_LIST_SIZE", 131072, 1024, 100_000_000),
            status_ttl=_int(env, "CITYCODE_STATUS_TTL", 300, 10, 86400),
            status_validity=_int(env, "CITYCODE_STATUS_VALIDITY", 7 * 24 * 3600, 600, 90 * 24 * 3600),
            ride_credential_hours=_int(env, "CITYCODE_RIDE_CREDENTIAL_HOURS", 24, 1, 24 * 30),
            ride_code_validity=ride_validity,
            ride_refresh=ride_refresh,
            ride_fare_limit=_int(env, "CITYCODE_RIDE_FARE_LIMIT", 2000, 0, 1_000_000),
            consent_answer_minutes=_int(env, "CITYCODE_CONSENT_ANSWER_MINUTES", 5, 1, 60),
            consent_fetch_minutes=_int(env, "CITYCODE_CONSENT_FETCH_MINUTES", 3, 1, 60),
            city_tz=city_tz,
            signing_alg=signing_alg,
            issuer_signing_algs=issuer_algs,
            city=_city(env),
            card_months=_int(env, "CITYCODE_CARD_MONTHS", 24, 1, 120),
            checkin_retention_days=_int(env, "CITYCODE_CHECKIN_RETENTION_DAYS", 14, 1, 365),
        )


_SIGNING_ALGS = ("ES256", "SM2")
_ISSUER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\Z")


def _signing_alg(name: str, value: str) -> str:
    alg = value.strip().upper()
    if alg not in _SIGNING_ALGS:
        raise ConfigError(f"{name} must be ES256 or SM2, got {value!r}")
    if alg == "SM2" and not sm2.available():
        raise ConfigError(f"{name} names SM2, but {sm2.INSTALL_HINT} is not installed")
    return alg


def _signing_algs(env: Mapping[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``CITYCODE_SIGNING_ALG`` (ES256 or SM2) and ``CITYCODE_ISSUER_SIGNING_ALGS`` (``issuer=ALG,...``)."""
    default = _signing_alg("CITYCODE_SIGNING_ALG", env.get("CITYCODE_SIGNING_ALG") or "ES256")
    pairs: dict[str, str] = {}
    text = env.get("CITYCODE_ISSUER_SIGNING_ALGS") or ""
    for item in filter(None, (part.strip() for part in text.split(","))):
        issuer, sep, alg = item.partition("=")
        issuer = issuer.strip()
        if not sep or not _ISSUER_ID.match(issuer):
            raise ConfigError(f"CITYCODE_ISSUER_SIGNING_ALGS must be issuer=ALG pairs separated by commas "
                              f"(issuer ids a-z, 0-9 and -), got {item!r}")
        if issuer in pairs:
            raise ConfigError(f"CITYCODE_ISSUER_SIGNING_ALGS names {issuer} twice")
        pairs[issuer] = _signing_alg(f"CITYCODE_ISSUER_SIGNING_ALGS ({issuer})", alg)
    return default, tuple(sorted(pairs.items()))


def _city(env: Mapping[str, str]) -> str:
    city = env.get("CITYCODE_CITY") or "demo-city"
    if not CITY_ID.match(city):
        raise ConfigError(f"CITYCODE_CITY must be 1 to 64 of a-z, 0-9 and - (not at either end), got {city!r}")
    return city
