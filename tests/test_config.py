"""Settings read from the environment: the consent windows (CITYCODE_CONSENT_*_MINUTES)."""

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
