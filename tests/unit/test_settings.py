"""CONDUCTOR_* settings: typed from the environment, bad values named."""

from __future__ import annotations

import pytest

from api.settings import Settings


def test_settings_come_from_conductor_keys_only() -> None:
    settings = Settings.from_env(
        {"CONDUCTOR_PORT": "9001", "CONDUCTOR_REGIONS": "EU, UK", "PORT": "1"}
    )
    assert (settings.port, settings.regions) == (9001, ("EU", "UK"))


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_an_er_job_lease_must_be_a_positive_number_of_seconds(value: str) -> None:
    with pytest.raises(ValueError, match=r"er_job_lease_s"):
        Settings.from_env({"CONDUCTOR_ER_JOB_LEASE_S": value})
    assert Settings.from_env({"CONDUCTOR_ER_JOB_LEASE_S": "2.5"}).er_job_lease_s == 2.5


def test_an_er_job_may_start_at_least_one_run() -> None:
    with pytest.raises(ValueError, match=r"er_job_max_attempts"):
        Settings.from_env({"CONDUCTOR_ER_JOB_MAX_ATTEMPTS": "0"})
    assert Settings.from_env({}).er_job_max_attempts == 3


@pytest.mark.parametrize("value", ["", "has space", "quote'", "x" * 65])
def test_a_neo4j_namespace_is_a_plain_name(value: str) -> None:
    with pytest.raises(ValueError, match="neo4j_namespace"):
        Settings.from_env({"CONDUCTOR_NEO4J_NAMESPACE": value})


def test_the_neo4j_namespace_defaults_to_conductor() -> None:
    assert Settings.from_env({}).neo4j_namespace == "conductor"
    given = Settings.from_env({"CONDUCTOR_NEO4J_NAMESPACE": "team-a.prod"})
    assert given.neo4j_namespace == "team-a.prod"
