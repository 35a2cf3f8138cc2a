"""Topic templates: build/parse round trips, filters, and refusal of invalid levels."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridsim_shared import topics
from gridsim_shared.ids import FeederPath, MeterPath, TransformerPath, UtilityPath, is_segment, slug

segments = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")


@given(segments, segments, segments, segments)
def test_reading_topic_round_trips(utility: str, feeder: str, transformer: str, meter: str) -> None:
    path = MeterPath(utility, feeder, transformer, meter)
    topic = topics.READING.build("gridsim", path)
    assert topic == f"gridsim/v1/reading/{utility}/{feeder}/{transformer}/{meter}"
    assert topics.READING.parse("gridsim", topic) == path
    assert topics.READING.matches("gridsim", topic)


def test_rollup_templates_differ_by_depth() -> None:
    transformer = topics.ROLLUP_TRANSFORMER.build("b", TransformerPath("u", "f", "t"))
    feeder = topics.ROLLUP_FEEDER.build("b", FeederPath("u", "f"))
    utility = topics.ROLLUP_UTILITY.build("b", UtilityPath("u"))
    assert (transformer, feeder, utility) == ("b/v1/rollup/u/f/t", "b/v1/rollup/u/f", "b/v1/rollup/u")
    assert not topics.ROLLUP_FEEDER.matches("b", transformer)
    assert topics.ROLLUP_UTILITY.parse("b", utility) == UtilityPath("u")
    with pytest.raises(topics.TopicError):
        topics.ROLLUP_UTILITY.parse("b", feeder)


def test_filters_pin_given_levels_and_match_exactly_their_depth() -> None:
    assert topics.READING.filter("gridsim") == "gridsim/v1/reading/+/+/+/+"
    assert topics.READING.filter("gridsim", utility="u1", feeder="f1") == "gridsim/v1/reading/u1/f1/+/+"
    assert topics.READING.filter("gridsim", meter="m1") == "gridsim/v1/reading/+/+/+/m1"
    assert topics.CLOCK.filter("gridsim") == "gridsim/v1/clock"
    assert topics.COMMAND.filter("x", service="billing") == "x/v1/cmd/billing/+"
    # rollups share a kind at three depths: each channel's filter matches its own depth only
    assert topics.ROLLUP_TRANSFORMER.filter("b") == "b/v1/rollup/+/+/+"
    assert topics.ROLLUP_FEEDER.filter("b") == "b/v1/rollup/+/+"
    assert topics.ROLLUP_UTILITY.filter("b") == "b/v1/rollup/+"
    with pytest.raises(topics.TopicError, match="no level"):
        topics.READING.filter("gridsim", substation="s1")


@pytest.mark.parametrize("bad", ["", "UPPER", "a/b", "+", "#", "a b", "-lead", "x" * 33])
def test_invalid_levels_are_refused(bad: str) -> None:
    assert not is_segment(bad)
    with pytest.raises(topics.TopicError, match="not a valid id"):
        topics.READING.build("gridsim", MeterPath("u", "f", "t", bad))


def test_parse_rejects_other_bases_and_kinds() -> None:
    with pytest.raises(topics.TopicError):
        topics.READING.parse("gridsim", "other/v1/reading/u/f/t/m")
    with pytest.raises(topics.TopicError):
        topics.READING.parse("gridsim", "gridsim/v1/batch/u/f/t")


@pytest.mark.parametrize(
    ("text", "expected"), [("MTR-0001", "mtr-0001"), ("SF Mission", "sf-mission"), ("  TX_101 ", "tx_101")]
)
def test_slug_makes_topic_levels(text: str, expected: str) -> None:
    assert slug(text) == expected
    assert is_segment(slug(text))


def test_slug_refuses_text_without_letters_or_digits() -> None:
    with pytest.raises(ValueError, match="cannot make a topic id"):
        slug("///")
