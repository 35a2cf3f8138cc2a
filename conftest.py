"""Fixtures for every test path: a real MQTT broker, a real PostgreSQL, and per-test ``settings``.

Use them from tests marked ``@pytest.mark.integration`` only (enforced: a test that uses the broker or the
database through ``mqtt_url``, ``database_url``, ``settings`` or ``timescale_settings`` is marked
``integration`` at collection, so ``make test-fast``, ``-m 'not integration and not slow'``, never needs a
server). The ladder that finds the servers (environment, local servers, embedded servers, testcontainers)
lives in ``gridsim.testing``.

Every test that uses the database is also marked ``database``, so a run on a second storage engine selects
just those (``-m 'database and not slow'``: CI's TimescaleDB pass). ``GRIDSIM_TEST_ENGINE`` names the
engine the database must be (``gridsim.testing.check_engine``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

from gridsim import testing
from gridsim_shared.settings import Settings

# ``make test-fast`` runs the property tests with fewer examples (``--hypothesis-profile=fast``); the full
# suite keeps Hypothesis's default of 100 (tests that ask for more say so with ``examples()``).
hypothesis_settings.register_profile("fast", max_examples=10)


@pytest.hookimpl(tryfirst=True)  # before -m selects: the markers added here take part in it
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if item.get_closest_marker("timescale") is not None and "timescale_settings" not in fixtures:
            msg = f"{item.nodeid} is marked timescale but does not use the timescale_settings fixture"
            raise pytest.UsageError(msg)
        if "mqtt_url" in fixtures or "database_url" in fixtures:
            item.add_marker(pytest.mark.integration)
        if "database_url" in fixtures:
            item.add_marker(pytest.mark.database)


def _from_ladder(ladder: testing.Ladder) -> Iterator[str]:
    with contextlib.ExitStack() as stack:
        try:
            url = ladder(stack)
        except testing.Unavailable as error:
            if testing.integration_required() or testing.required_engine() is not None:
                pytest.fail(f"{error} (CI is set, so this fails instead of skipping)")
            pytest.skip(str(error))
        yield url


@pytest.fixture(scope="session")
def mqtt_url() -> Iterator[str]:
    """URL of a broker shared by the whole session (tests separate by ``settings.mqtt.base_topic``)."""
    yield from _from_ladder(testing.mqtt_url_ladder)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """URL of a PostgreSQL database shared by the session (tests separate by schema).

    With ``GRIDSIM_TEST_ENGINE`` set, a database of another engine fails the tests (never skips them).
    """
    for url in _from_ladder(testing.database_url_ladder):
        try:
            testing.check_engine(url)
        except testing.WrongEngine as error:
            pytest.fail(str(error))
        yield url


@pytest.fixture
def settings(mqtt_url: str, database_url: str) -> Iterator[Settings]:
    """Settings for one test: unique topic prefix, fresh migrated schema, no demo world, clock stopped."""
    with testing.fresh_settings(mqtt_url, database_url) as value:
        yield value


@pytest.fixture
def timescale_settings(settings: Settings) -> Settings:
    """``settings`` on TimescaleDB (its migrations applied); for tests marked ``timescale``.

    Without TimescaleDB the test is skipped, unless ``GRIDSIM_TEST_ENGINE=timescale`` (CI's TimescaleDB
    pass), where ``database_url`` has already failed it.
    """
    if testing.database_engine(settings.db.url) != "timescale":
        pytest.skip("the database is plain PostgreSQL (TimescaleDB is not installed and preloaded)")
    return settings
