"""The watermark publisher: the latest committed interval, published retained, never twice.

Closing sets the watermark after each interval's commit; publishing it may fail while the broker is away.
The publisher keeps the latest mark and publishes it on the next try (retained: only the latest matters),
so a broker outage delays the watermark but never loses or reorders it.

A broker that restarted without its retained messages (a crash before its persistence was saved, none
configured, a new broker behind the same address) no longer holds the mark; with the clock stood still,
nothing would be committed to publish it again, and a gateway or meter-sim subscribing would see none. So
the latest mark is published again on every new connection: the bus's reconnect count is part of
"published".
"""

from __future__ import annotations

import logging
from datetime import datetime

import aiomqtt

from gridsim_shared import channels, topics
from gridsim_shared.bus import Bus
from gridsim_shared.messages import Watermark

__all__ = ["WatermarkPublisher"]

_LOGGER = logging.getLogger(__name__)


class WatermarkPublisher:
    """Holds the latest watermark and what was last published of it."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.latest: Watermark | None = None
        self.published: Watermark | None = None
        self._published_on = -1  # the bus connection (its reconnect count) ``published`` went out on

    def advance(self, mark: Watermark) -> None:
        """An interval was committed: ``mark`` is the watermark to publish."""
        self.latest = mark

    def received(self, until: datetime) -> None:
        """Every live instance received (and committed) all that was delivered up to ``until``: the mark
        to publish says so (``received_until``, meter-sim's flow-control window), even with no new close."""
        if self.latest is not None:
            self.latest = self.latest.model_copy(update={"received_until": until})

    async def publish(self) -> None:
        """Publish the latest mark if it was not yet on this connection; a broker error keeps it for the
        next call."""
        mark = self.latest
        connection = self.bus.reconnects
        if mark is None or (mark == self.published and connection == self._published_on):
            return
        try:
            await self.bus.publish(channels.WATERMARK, mark, topics.NoPath())
            # Counted before the publish: a connection lost meanwhile publishes it again on the next one.
            self.published, self._published_on = mark, connection
        except aiomqtt.MqttError as exc:
            _LOGGER.warning("watermark %s not published yet (%s)", mark.committed_until, exc)
