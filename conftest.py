"""Fixtures for every test path: a real MQTT broker, a real PostgreSQL, and per-test ``settings``.

Use them from tests marked ``@pytest.mark.integration`` only. The ladder that finds the servers
(environment, local servers, embedded servers, testcontainers) lives in ``gridsim.testing``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from gridsim import testing
from gridsim_shared.settings import Settings


def _from_ladder(ladder: testing.Ladder) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            url = ladder(stack)
        except testing.Unavailable as error:
            if testing.integration_required():
                pytest.fail(f"{error} (CI is set, so this fails instead of skipping)")
            pytest.skip(str(error))
        yield url


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """URL of a broker shared by the whole session (tests separate by ``settings.mqtt.base_topic``)."""
    yield from _from_ladder(testing.mqtt_url_ladder)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a PostgreSQL database shared by the session (tests separate by schema)."""
    yield from _from_ladder(testing.database_url_ladder)


@pytest.fixture
def settings(mqtt_url: str, database_url: str) -> Iterator[Settings]:
    """Settings for one test: unique topic prefix, fresh migrated schema, no demo world, clock stopped."""
    with testing.fresh_settings(mqtt_url, database_url) as value:
        yield value
