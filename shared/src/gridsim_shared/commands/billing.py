"""The commands the billing service answers: each one's request and reply, the one definition both ends use."""

from __future__ import annotations

from gridsim_shared.channels import Command
from gridsim_shared.schemas import billing

SERVICE = "billing"

# handlers

CREATE_TRADE: Command[billing.P2PTradeCreate, billing.P2PTradeCreated] = Command(
    SERVICE,
    "create_trade",
    billing.P2PTradeCreate,
    billing.P2PTradeCreated,
    "Record a P2P trade (seller: a prosumer; not in the future; not in a month already settled).",
)
LIST_TRADES: Command[billing.TradeQuery, billing.TradePage] = Command(
    SERVICE,
    "list_trades",
    billing.TradeQuery,
    billing.TradePage,
    "Trades, oldest first, filtered by meter (as buyer, seller or either) and month.",
)
GET_TRADE: Command[billing.TradeId, billing.P2PTrade] = Command(
    SERVICE, "get_trade", billing.TradeId, billing.P2PTrade, "One trade with its settlement."
)
BILL: Command[billing.BillQuery, billing.Bill] = Command(
    SERVICE,
    "bill",
    billing.BillQuery,
    billing.Bill,
    "A meter's bill for a month: final (stored once) when the month has ended, else provisional.",
)
BILLS: Command[billing.BillsQuery, billing.BillPage] = Command(
    SERVICE,
    "bills",
    billing.BillsQuery,
    billing.BillPage,
    "One page of a month's bills for every meter linked to an ER.",
)
