"""Settings read from the environment: the consent windows (CITYCODE_CONSENT_*_MINUTES), the Redis Cluster URL."""

from __future__ import annotations

import pytest

from codeservice.config import ConfigError, Settings
from codeservice.consent import service as consent


def test_consent_windows_default_to_five_and_three_minutes():
    settings = Settings.from_env({"CITYCODE_HOME": "/tmp/x"})
    assert settings.consent_answer_minutes == 5 and settings.consent_fetch_minutes == 3
    # The service layer's own defaults (used when no settings are at hand) are the same.
    assert (consent.ANSWER_MINUTES, consent.FETCH_MINUTES) == (5, 3)


def test_consent_windows_are_read_from_the_environment():
    settings = Settings.from_env({"CITYCODE_HOME": "/tmp/x", "CITYCODE_CONSENT_ANSWER_MINUTES": "10",
                                  "CITYCODE_CONSENT_FETCH_MINUTES": "1"})
    assert settings.consent_answer_minutes == 10 and settings.consent_fetch_minutes == 1
    edges = Settings.from_env({"CITYCODE_HOME": "/tmp/x", "CITYCODE_CONSENT_ANSWER_MINUTES": "60",
                               "CITYCODE_CONSENT_FETCH_MINUTES": "60"})
    assert edges.consent_answer_minutes == 60 and edges.consent_fetch_minutes == 60


@pytest.mark.parametrize("name", ["CITYCODE_CONSENT_ANSWER_MINUTES", "CITYCODE_CONSENT_FETCH_MINUTES"])
@pytest.mark.parametrize("value, message", [("0", "between 1 and 60, got 0"), ("61", "between 1 and 60, got 61"),
                                            ("-3", "between 1 and 60"), ("five", "whole number"),
                                            ("2.5", "whole number")])
def test_a_consent_window_out_of_range_is_a_config_error_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"CITYCODE_HOME": "/tmp/x", name: value})
    assert name in str(raised.value) and message in str(raised.value)


def test_a_redis_cluster_url_selects_the_cluster_with_its_seed_nodes():
    from codeservice.state import cluster_nodes

    url = "redis+cluster://10.0.0.1:7000,10.0.0.2:7001,redis-3.internal:7002"
    settings = Settings.from_env({"CITYCODE_REDIS_URL": url})
    assert settings.redis_url == url
    assert cluster_nodes(url) == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("redis-3.internal", 7002)]


@pytest.mark.parametrize("url, message", [
    ("redis+cluster://", "redis+cluster://host:port"),
    ("redis+cluster://10.0.0.1", "each node is host:port"),
    ("redis+cluster://10.0.0.1:7000,", "each node is host:port"),
    ("redis+cluster://10.0.0.1:0", "each node is host:port"),
    ("redis+cluster://10.0.0.1:70000", "each node is host:port"),
    ("redis+cluster://10.0.0.1:7000/0", "no database, path, query or credentials"),
    ("redis+cluster://:secret@10.0.0.1:7000", "no database, path, query or credentials"),
    ("redis-cluster://10.0.0.1:7000", "must start with redis://, rediss://, unix:// or redis+cluster://"),
])
def test_a_bad_redis_cluster_url_is_a_config_error_naming_the_variable(url, message):
    with pytest.raises(ConfigError, match="CITYCODE_REDIS_URL") as caught:
        Settings.from_env({"CITYCODE_REDIS_URL": url})
    assert message in str(caught.value)


def test_a_prefix_with_braces_is_refused_on_a_cluster_where_it_would_be_every_keys_hash_tag():
    with pytest.raises(ConfigError, match="CITYCODE_REDIS_PREFIX"):
        Settings.from_env({"CITYCODE_REDIS_URL": "redis+cluster://127.0.0.1:7000", "CITYCODE_REDIS_PREFIX": "{x}:"})
