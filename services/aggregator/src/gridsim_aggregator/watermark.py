"""The watermark publisher: the latest committed interval, published retained, never twice.

Closing sets the watermark after each interval's commit; publishing it may fail while the broker is away.
The publisher keeps the latest mark and publishes it on the next try (retained: only the latest matters),
so a broker outage delays the watermark but never loses or reorders it.
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

    def advance(self, mark: Watermark) -> None:
        """An interval was committed: ``mark`` is the watermark to publish."""
        self.latest = mark

    def received(self, until: datetime) -> None:
        """Every live instance received (and committed) all that was delivered up to ``until``: the mark
        to publish says so (``received_until``, meter-sim's flow-control window), even with no new close."""
        if self.latest is not None:
            self.latest = self.latest.model_copy(update={"received_until": until})

    async def publish(self) -> None:
        """Publish the latest mark if it was not yet; a broker error keeps it for the next call."""
        mark = self.latest
        if mark is None or mark == self.published:
            return
        try:
            await self.bus.publish(channels.WATERMARK, mark, topics.NoPath())
            self.published = mark
        except aiomqtt.MqttError as exc:
            _LOGGER.warning("watermark %s not published yet (%s)", mark.committed_until, exc)
