"""An in-memory bus: the :class:`~gridsim_shared.bus.Bus` interface without a broker, for fast handler tests.

:class:`MemoryBus` *is* a ``Bus``: it inherits everything a service uses (``publish``, ``subscribe``,
``include`` with its routers and commands, ``request``, status and ``ready``) and replaces only the
transport, the five methods in :data:`TRANSPORT`. So the two cannot drift apart: what the library adds to
the bus on top of the transport (typed commands, say) works here unchanged, and ``tests`` check that no
other method is overridden. Topics are matched by the same code as the real bus (aiomqtt's ``Topic`` and
``Wildcard``, with ``$share`` groups stripped); a :class:`MemoryBroker` keeps retained messages (an empty
retained payload clears one, as in MQTT), delivers them on subscribe, hands a ``$share`` group's message to
one member, and delivers each bus's messages in order on a task of its own, like a connection's loop.

What it does not model: QoS, persistent sessions, reconnects, the broker's ACL, message size limits at the
broker. Tests of those use the real broker (``shared/tests/test_bus.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiomqtt

from gridsim_shared import topics
from gridsim_shared.bus import Bus, RawHandler, _Subscription
from gridsim_shared.settings import MqttSettings

__all__ = ["TRANSPORT", "MemoryBroker", "MemoryBus"]

# The only methods of Bus that MemoryBus replaces: connecting, closing, publishing and subscribing.
TRANSPORT = frozenset({"start", "close", "publish_raw", "publish_raw_nowait", "subscribe_raw"})

_SHARE = "$share/"


class MemoryBroker:
    """The buses of one test, their retained messages and the routing between them."""

    def __init__(self, base_topic: str = "gridsim") -> None:
        self.base_topic = base_topic
        self.retained: dict[str, bytes] = {}
        self.published = 0
        self._buses: list[MemoryBus] = []

    def bus(self, service: str, instance: str = "0", **kwargs: Any) -> MemoryBus:
        """A bus of ``service`` on this broker (not started: use ``async with``)."""
        return MemoryBus(self, service, instance, **kwargs)

    def settings(self) -> MqttSettings:
        """MQTT settings naming this broker's base topic (the URL is never used)."""
        return MqttSettings(url="mqtt://memory.invalid:1", base_topic=self.base_topic)

    def _attach(self, bus: MemoryBus) -> None:
        self._buses.append(bus)

    def _detach(self, bus: MemoryBus) -> None:
        with contextlib.suppress(ValueError):
            self._buses.remove(bus)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Route ``payload`` to every bus with a matching subscription (one member per ``$share`` group)."""
        self.published += 1
        if retain:
            if payload:
                self.retained[topic] = payload
            else:
                self.retained.pop(topic, None)
        parsed = aiomqtt.Topic(topic)
        groups_served: set[str] = set()
        for bus in list(self._buses):
            matching = [sub.filter for sub in bus._subs if parsed.matches(sub.match)]
            if not matching:
                continue
            groups = {_group(f) for f in matching if f.startswith(_SHARE)}
            plain = any(not f.startswith(_SHARE) for f in matching)
            if plain or groups - groups_served:
                groups_served |= groups
                bus._deliver(parsed, payload, retain=False)

    async def settle(self) -> None:
        """Wait until every bus has handled everything, including what handling it published."""
        while True:
            before = self.published
            for bus in list(self._buses):
                await bus.drain()
            if self.published == before:
                return

    def retained_for(self, filter_: str) -> list[tuple[aiomqtt.Topic, bytes]]:
        """Retained messages whose topic matches ``filter_``."""
        match = _Subscription(filter_, _ignore).match
        found = [(aiomqtt.Topic(topic), payload) for topic, payload in self.retained.items()]
        return [(topic, payload) for topic, payload in found if topic.matches(match)]


class MemoryBus(Bus):
    """A :class:`Bus` whose transport is a :class:`MemoryBroker` in the same event loop."""

    def __init__(self, broker: MemoryBroker, service: str, instance: str = "0", **kwargs: Any) -> None:
        super().__init__(broker.settings(), service, instance, **kwargs)
        self.broker = broker
        self._inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue()
        self._mid = 0

    async def start(self, connect_timeout: float = 30.0) -> None:
        """Join the broker: the reply subscription, retained messages for what is subscribed, ``online``."""
        del connect_timeout  # joining cannot fail
        self._subs.append(_Subscription(topics.REPLY.build(self.base, self._reply_path), self._on_reply))
        self.broker._attach(self)
        self._task = asyncio.create_task(self._pump(), name=f"memory-bus-{self.client_id}")
        self._connected.set()
        for sub in list(self._subs):
            self._deliver_retained(sub.filter)
        if self._announce:
            await self._publish_status("online")

    async def close(self) -> None:
        """Say ``offline`` (when it announces itself), leave the broker, stop delivering."""
        if self._announce and self._connected.is_set():
            await self._publish_status("offline")
        self._closing = True
        self._connected.clear()
        self.broker._detach(self)
        for task in [*self._tasks, *([self._task] if self._task else [])]:
            task.cancel()
        if self._task is not None:
            await asyncio.wait({self._task})
        self._task = None

    async def publish_raw(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Hand ``payload`` to the broker (which queues it for each subscriber at once)."""
        del qos
        if not self._connected.is_set():
            msg = f"{self.client_id} is not started"
            raise ConnectionError(msg)
        self.broker.publish(topic, payload, retain=retain)

    def publish_raw_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """:meth:`publish_raw` without waiting; False when not started."""
        del qos
        if not self._connected.is_set():
            return False
        self.broker.publish(topic, payload, retain=retain)
        return True

    async def subscribe_raw(self, filter_: str, handler: RawHandler, *, concurrent: bool = False) -> None:
        """Subscribe; the retained messages matching ``filter_`` follow, as after a broker's SUBACK."""
        self._subs.append(_Subscription(filter_, handler, concurrent))
        if self._connected.is_set():
            self._deliver_retained(filter_)

    # ------------------------------------------------------------------ delivery
    def _deliver_retained(self, filter_: str) -> None:
        for topic, payload in self.broker.retained_for(filter_):
            self._deliver(topic, payload, retain=True)

    def _deliver(self, topic: aiomqtt.Topic, payload: bytes, *, retain: bool) -> None:
        self._mid += 1
        self._inbox.put_nowait(aiomqtt.Message(topic, payload, 1, retain, self._mid, None))

    async def _pump(self) -> None:
        # One message at a time, in order, through the real bus's dispatch (counters, size limit, handlers).
        while True:
            message = await self._inbox.get()
            try:
                await self._dispatch(message)
            finally:
                self._inbox.task_done()

    async def drain(self) -> None:
        """Wait until every message delivered to this bus so far has been handled (commands too)."""
        await self._inbox.join()
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def _group(filter_: str) -> str:
    return filter_.split("/", 2)[1]


async def _ignore(_topic: str, _payload: bytes, _ack: Any) -> None:
    return None
