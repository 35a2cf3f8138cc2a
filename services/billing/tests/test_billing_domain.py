"""Bill math, settlement and billing months: pure functions, exact decimals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from gridsim_billing.domain import (
    SettledTrade,
    Tariff,
    TradeLine,
    Usage,
    allocate_fcfs,
    bill_status,
    compute_bill,
    month_of,
    month_period,
    rollup_resolution,
    round_money,
)

D = Decimal
UTC_ZONE = ZoneInfo("UTC")
KOLKATA = ZoneInfo("Asia/Kolkata")
FLAT = Tariff(currency="INR", grid_rate=D(6), grid_credit_rate=D(3))
TOU = Tariff(currency="INR", grid_rate=D(6), grid_credit_rate=D(3), peak_rate=D(9))


def _trade(units: str, price: str, delivered: str | None = None) -> SettledTrade:
    return SettledTrade(D(units), D(delivered if delivered is not None else units), D(price))


# ---------------------------------------------------------------- the seed's worked examples
def test_seed_consumer_example_150_consumed_30_bought_for_150_at_rate_6_is_870() -> None:
    figures = compute_bill("consumer", Usage(consumed_kwh=D(150)), [_trade("30", "5")], [], FLAT)
    assert figures.grid_used_kwh == 120
    assert figures.p2p_kwh == 30
    assert figures.p2p_cost == 150
    assert figures.grid_bill == 720
    assert round_money(figures.amount_due) == D("870.00")


def test_seed_prosumer_example_refunds_190_at_default_rates() -> None:
    """Consumed 100, produced 120, sold 40: grid used 100, exported 80, amount due −190.

    With the default rates (grid 6, credit 3) the example holds when the 40 kWh sold earned 550 (13.75 per
    kWh): 100×6 − (80×3 + 550) = −190. No P2P price between the credit rate and the grid rate can give
    −190 with grid rate 6 (it would need 80×credit + 40×price = 790 with both ≤ 6, at most 720).
    """
    figures = compute_bill(
        "prosumer", Usage(consumed_kwh=D(100), produced_kwh=D(120)), [], [_trade("40", "13.75")], FLAT
    )
    assert figures.grid_used_kwh == 100  # the prosumer's whole consumption is billed at the grid rate
    assert figures.grid_exported_kwh == 80
    assert figures.p2p_kwh == 40
    assert figures.grid_earning == 240
    assert figures.p2p_earning == D("550")
    assert round_money(figures.amount_due) == D("-190.00")


def test_prosumer_that_exports_more_than_it_uses_gets_a_refund() -> None:
    figures = compute_bill(
        "prosumer", Usage(consumed_kwh=D(50), produced_kwh=D(300)), [], [_trade("20", "5")], FLAT
    )
    # 50×6 − (280×3 + 20×5) = 300 − 940
    assert figures.amount_due == D(-640)


def test_delivered_not_contracted_quantities_are_billed() -> None:
    bought = [_trade("30", "5", delivered="12")]
    consumer = compute_bill("consumer", Usage(consumed_kwh=D(150)), bought, [], FLAT)
    assert consumer.bought_kwh == 12
    assert consumer.contracted_kwh == 30
    assert consumer.grid_used_kwh == 138
    assert consumer.amount_due == 138 * 6 + 60


def test_purchases_beyond_consumption_leave_no_negative_grid_use() -> None:
    figures = compute_bill("consumer", Usage(consumed_kwh=D(10)), [_trade("30", "5")], [], FLAT)
    assert figures.grid_used_kwh == 0
    assert figures.amount_due == 150  # the contract is still paid for


def test_empty_month_is_a_zero_bill() -> None:
    figures = compute_bill("prosumer", Usage(), [], [], TOU)
    assert figures.amount_due == 0
    assert figures.grid_peak_kwh == 0


# ---------------------------------------------------------------- rounding
def test_money_is_rounded_once_at_the_end_half_away_from_zero() -> None:
    # Each part rounds to 0.00 alone; their exact sum, 0.0076, rounds to 0.01.
    figures = compute_bill("consumer", Usage(consumed_kwh=D("0.0014")), [_trade("0.0008", "5")], [], FLAT)
    assert figures.grid_bill == D("0.0036")  # 0.0006 × 6
    assert figures.p2p_cost == D("0.0040")
    assert round_money(figures.amount_due) == D("0.01")
    assert round_money(figures.grid_bill) + round_money(figures.p2p_cost) == D("0.00")
    assert round_money(D("-0.005")) == D("-0.01")
    assert round_money(D("2.675")) == D("2.68")  # exact decimal, not the float 2.67499…


# ---------------------------------------------------------------- time of use
def test_time_of_use_prices_peak_hours_apart() -> None:
    figures = compute_bill("consumer", Usage(consumed_kwh=D(100), consumed_peak_kwh=D(40)), [], [], TOU)
    assert (figures.grid_peak_kwh, figures.grid_offpeak_kwh) == (40, 60)
    assert (figures.peak_cost, figures.offpeak_cost) == (360, 360)
    assert figures.amount_due == 720


def test_time_of_use_p2p_energy_offsets_both_periods_pro_rata() -> None:
    usage = Usage(consumed_kwh=D(100), consumed_peak_kwh=D(40))
    figures = compute_bill("consumer", usage, [_trade("20", "5")], [], TOU)
    assert (figures.grid_peak_kwh, figures.grid_offpeak_kwh) == (32, 48)
    assert figures.amount_due == 32 * 9 + 48 * 6 + 100


# ---------------------------------------------------------------- settlement
T0 = datetime(2025, 6, 10, 12, tzinfo=UTC)


def _line(units: str, minutes: int, created: int = 0) -> TradeLine:
    return TradeLine(
        uuid4(), T0 + timedelta(minutes=minutes), T0 + timedelta(seconds=created), D(units), D(5)
    )


def test_oversold_seller_serves_trades_first_come_first_served() -> None:
    first, second, third = _line("6", 0), _line("6", 10), _line("3", 20)
    delivered = allocate_fcfs(D(10), [third, first, second])  # order of arrival in the list is irrelevant
    assert delivered == {first.id: 6, second.id: 4, third.id: 0}


def test_seller_with_enough_production_delivers_everything() -> None:
    trades = [_line("6", 0), _line("6", 10)]
    assert allocate_fcfs(D(100), trades) == {t.id: 6 for t in trades}


def test_simultaneous_trades_go_to_the_one_recorded_first() -> None:
    later, earlier = _line("5", 0, created=2), _line("5", 0, created=1)
    assert allocate_fcfs(D(7), [later, earlier]) == {earlier.id: 5, later.id: 2}


def test_seller_without_production_delivers_nothing() -> None:
    trade = _line("5", 0)
    assert allocate_fcfs(D(0), [trade]) == {trade.id: 0}
    assert allocate_fcfs(D(-1), [trade]) == {trade.id: 0}


# ---------------------------------------------------------------- months
def test_month_period_in_utc_and_across_the_year_end() -> None:
    june = month_period("2025-06", UTC_ZONE)
    assert (june.start, june.end) == (datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC))
    december = month_period("2025-12", UTC_ZONE)
    assert december.end == datetime(2026, 1, 1, tzinfo=UTC)


def test_month_period_in_a_local_zone() -> None:
    june = month_period("2025-06", KOLKATA)
    assert june.start == datetime(2025, 5, 31, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "zone", "month"),
    [
        (datetime(2025, 6, 30, 23, 59, 59, tzinfo=UTC), UTC_ZONE, "2025-06"),
        (datetime(2025, 7, 1, tzinfo=UTC), UTC_ZONE, "2025-07"),
        (datetime(2025, 6, 30, 18, 30, tzinfo=UTC), KOLKATA, "2025-07"),
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), UTC_ZONE, "2025-12"),
    ],
)
def test_month_of_an_instant(instant: datetime, zone: ZoneInfo, month: str) -> None:
    assert month_of(instant, zone) == month


def test_rollup_resolution_is_the_coarsest_that_fits() -> None:
    june = month_period("2025-06", UTC_ZONE)
    assert rollup_resolution(june, UTC_ZONE, time_of_use=False) == "1d"
    assert rollup_resolution(june, UTC_ZONE, time_of_use=True) == "1h"
    new_york = ZoneInfo("America/New_York")
    assert rollup_resolution(month_period("2025-03", new_york), new_york, time_of_use=True) == "1h"
    assert rollup_resolution(month_period("2025-06", KOLKATA), KOLKATA, time_of_use=False) == "15m"


def test_bill_status_follows_the_clock_and_the_watermark() -> None:
    june = month_period("2025-06", UTC_ZONE)
    july_1 = datetime(2025, 7, 1, tzinfo=UTC)
    assert bill_status(june, datetime(2025, 5, 31, tzinfo=UTC), None, 60) == "future"
    assert bill_status(june, datetime(2025, 6, 20, tzinfo=UTC), None, 60) == "provisional"
    assert bill_status(june, july_1, None, 60) == "final"
    last_minute = july_1 - timedelta(minutes=1)
    assert bill_status(june, july_1, last_minute - timedelta(minutes=1), 60) == "provisional"
    assert bill_status(june, july_1, last_minute, 60) == "final"
