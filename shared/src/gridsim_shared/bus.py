"""The message bus: the only module that talks MQTT (aiomqtt over paho).

A :class:`Bus` keeps one connection alive (reconnect with capped exponential backoff, resubscribe,
republish the retained ``online`` status, ``offline`` as last will), dispatches messages to typed handlers,
and does request/reply with the reply topic and correlation id carried in the payload envelope, so it
works on MQTT 3.1.1 as well as 5.

Handlers are registered on a :class:`Router` (one per service, in its ``handlers.py``) and bound to the
service's dependencies with :meth:`Bus.include`. A message that fails validation is logged, counted and
dropped; the consumer goes on.

Commands are typed (:class:`~gridsim_shared.channels.Command`, defined in :mod:`gridsim_shared.commands`):
a caller sends one with ``await bus.call(CMD, req)`` and gets the validated reply; a service answers it with
a handler declared by ``@router.handles(CMD)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import BaseModel, ValidationError

from gridsim_shared import channels, topics
from gridsim_shared.channels import Channel, Command, NoArgs
from gridsim_shared.errors import RemoteError, RpcTimeout, error_body, validation_error
from gridsim_shared.ids import is_segment, slug
from gridsim_shared.messages import ErrorBody, Message, Reply, Request, ServiceStatus
from gridsim_shared.metrics import RPC_SECONDS
from gridsim_shared.settings import MqttSettings

__all__ = ["COMMAND_QOS", "Ack", "Bus", "Router", "validation_error"]

_LOGGER = logging.getLogger(__name__)
_CLOSE_TIMEOUT_S = 3.0
_PENDING_CALLS_WARNING = 100_000
# Commands and replies travel at QoS 0. Request/reply is acknowledged end to end (the reply, else the
# requester's timeout), so a broker PUBACK adds nothing but a packet; and that packet is what made each
# round trip wait out Nagle's algorithm on a broker without `set_tcp_nodelay` (the PUBACK unacknowledged
# by the client's delayed ACK holds the reply back ~40 ms: a month's bill took 48 ms, 4 of them billing's).
# At most once is also the right promise for a command: a QoS 1 retry after a lost PUBACK could run a
# step or a reset twice. A request sent while the connection is down waits for it, as before.
COMMAND_QOS = 0

D = TypeVar("D")
M = TypeVar("M", bound=Message)
P = TypeVar("P")
Q = TypeVar("Q", bound=BaseModel)
R = TypeVar("R")

Ack = Callable[[], None]
RawHandler = Callable[[str, bytes, Ack], Awaitable[None]]
# A command this bus serves, with its handler bound to its router's deps: ``handler(request) -> reply``.
_Served = tuple[Command[Any, Any], Callable[[Any], Awaitable[Any]]]


@dataclass
class _Subscription:
    filter: str
    handler: RawHandler
    concurrent: bool = False
    # The filter incoming topics are matched against, parsed and validated once rather than per message.
    match: aiomqtt.Wildcard = field(init=False)

    def __post_init__(self) -> None:
        self.match = aiomqtt.Wildcard(_strip_share(self.filter))


@dataclass
class Router(Generic[D]):
    """Every message and command handler of one service, declared with decorators in ``handlers.py``."""

    _subscriptions: list[tuple[Channel[Any, Any], Callable[..., Awaitable[None]], dict[str, str]]] = field(
        default_factory=list
    )
    _commands: dict[str, tuple[Command[Any, Any], Callable[..., Awaitable[Any]]]] = field(
        default_factory=dict
    )

    def subscribe(
        self, channel: Channel[M, P], **fixed: str
    ) -> Callable[[Callable[[M, P, D], Awaitable[None]]], Callable[[M, P, D], Awaitable[None]]]:
        """Register ``handler(msg, path, deps)`` for every message on ``channel`` (levels in ``fixed`` pinned)."""

        def register(handler: Callable[[M, P, D], Awaitable[None]]) -> Callable[[M, P, D], Awaitable[None]]:
            self._subscriptions.append((channel, handler, fixed))
            return handler

        return register

    def handles(
        self, command: Command[Q, R]
    ) -> Callable[[Callable[[Q, D], Awaitable[R]]], Callable[[Q, D], Awaitable[R]]]:
        """Register ``handler(request, deps) -> reply`` as the answer to ``command``.

        The request's ``data`` is validated into the command's request model first; a validation failure is
        replied as a 422 naming the field. The handler's return value is the reply's ``data``.
        """
        if not is_segment(command.operation):
            msg = f"operation {command.operation!r} is not a valid topic level"
            raise ValueError(msg)

        def register(handler: Callable[[Q, D], Awaitable[R]]) -> Callable[[Q, D], Awaitable[R]]:
            if command.operation in self._commands:
                msg = f"{command.name} has two handlers"
                raise ValueError(msg)
            self._commands[command.operation] = (command, handler)
            return handler

        return register

    @property
    def commands(self) -> list[Command[Any, Any]]:
        """The commands this router answers."""
        return [command for command, _handler in self._commands.values()]

    @property
    def operations(self) -> list[str]:
        """Names of the commands this router answers."""
        return sorted(self._commands)


class Bus:
    """One MQTT connection of one service instance, kept alive in the background."""

    def __init__(
        self,
        settings: MqttSettings,
        service: str,
        instance: str = "0",
        *,
        client_id: str | None = None,
        clean_session: bool = True,
        manual_ack: bool = False,
        status_detail: Callable[[], dict[str, Any]] | None = None,
        announce: bool = True,
    ) -> None:
        self.settings = settings
        self.base = settings.base_topic
        self.service = service
        self.instance = instance
        self.client_id = client_id or f"{service}-{instance}-{secrets.token_hex(4)}"
        # Replies come back under this client's broker user (the service's name on an open broker).
        self._reply_path = topics.ClientPath(slug(settings.username or service), slug(self.client_id))
        self._clean_session = clean_session
        self._manual_ack = manual_ack
        self._status_detail = status_detail
        # A probe (readiness.wait_ready, a test's client) is no service: it publishes no status at all.
        self._announce = announce
        self._subs: list[_Subscription] = []
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        # Set by ready(): the service announces it in every ``online`` status from then on.
        self._ready = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._counter = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every included router's commands, each handler bound to its router's deps.
        self._commands: dict[str, _Served] = {}
        self.started_at = datetime.now(UTC)
        self.dropped = 0  # malformed messages logged and dropped
        self.handler_errors = 0
        self.received = 0
        self.reconnects = 0
        self.publish_retries = 0  # publishes retried after a timeout or a lost connection
        # Set by a Supervisor: its counters and problems go into every status this bus publishes.
        self.health: Callable[[], tuple[dict[str, Any], list[str]]] | None = None
        self.heartbeat_s: float | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self, connect_timeout: float = 30.0) -> None:
        """Start the connection loop and wait (bounded) for the first connection."""
        self._subs.append(_Subscription(topics.REPLY.build(self.base, self._reply_path), self._on_reply))
        self._task = asyncio.create_task(self._run(), name=f"bus-{self.client_id}")
        try:
            await asyncio.wait_for(self._connected.wait(), connect_timeout)
        except TimeoutError as exc:
            await self.close()
            msg = (
                f"could not connect to the MQTT broker at {self.settings.url} within {connect_timeout:.0f} s"
            )
            raise ConnectionError(msg) from exc

    async def close(self) -> None:
        """Publish ``offline``, disconnect and stop the loop."""
        self._closing = True
        if self._announce and self._client is not None and self._connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, asyncio.CancelledError):
                await asyncio.wait_for(self._publish_status("offline"), 2)
        for task in list(self._tasks):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            # When the broker vanished at the same moment (kill -9 of the launcher), paho's disconnect can
            # wait for its full timeout; a service that is stopping does not need to wait for it.
            await asyncio.wait({self._task}, timeout=_CLOSE_TIMEOUT_S)
        self._task = None

    @property
    def connected(self) -> bool:
        """True while the broker connection is up."""
        return self._connected.is_set()

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until the broker connection is up."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    def _status(self, state: str) -> ServiceStatus:
        detail: dict[str, Any] = {
            "received": self.received,
            "dropped": self.dropped,
            "handler_errors": self.handler_errors,
            "reconnects": self.reconnects,
            "publish_retries": self.publish_retries,
        }
        if self._status_detail is not None:
            detail |= self._status_detail()
        problems: list[str] = []
        if self.health is not None:
            extra, problems = self.health()
            detail |= extra
        return ServiceStatus(
            service=self.service,
            instance=self.instance,
            state="online" if state == "online" else "offline",
            ready=self._ready and state == "online",
            started_at=self.started_at,
            detail=detail,
            heartbeat_at=datetime.now(UTC),
            heartbeat_s=self.heartbeat_s,
            problems=problems,
        )

    def status_report(self) -> dict[str, Any]:
        """The ``online`` status as it would be published now (for metrics)."""
        return self._status("online").model_dump(mode="json")

    async def _publish_status(self, state: str) -> None:
        await self.publish(
            channels.STATUS, self._status(state), topics.ServicePath(self.service, self.instance)
        )

    @property
    def is_ready(self) -> bool:
        """True once :meth:`ready` was called."""
        return self._ready

    async def ready(self) -> None:
        """Announce ``ready`` in the retained status: call it once every handler is subscribed (each
        ``include``/``subscribe`` returns after the broker's SUBACK) and the service can answer.

        Every later status (heartbeats, the one republished on reconnect after resubscribing) says so
        too; :func:`gridsim_shared.readiness.wait_ready` waits for it.
        """
        self._ready = True
        await self._publish_status("online")

    async def publish_status(self) -> None:
        """Republish the retained ``online`` status (e.g. with fresh counters)."""
        await self._publish_status("online")

    def _will(self) -> aiomqtt.Will:
        path = topics.ServicePath(self.service, self.instance)
        return aiomqtt.Will(
            topic=channels.STATUS.topic(self.base, path),
            payload=channels.STATUS.encode(self._status("offline")),
            qos=1,
            retain=True,
        )

    def _connect_properties(self) -> Properties | None:
        """MQTT 5: a persistent session outlives the connection (Session Expiry; each reconnect resumes it,
        never starts clean), and the broker sends at most Receive Maximum unacknowledged messages, which
        bounds what a manual-ack consumer holds in memory."""
        if self.settings.protocol != "5":
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho is untyped here
        if not self._clean_session:
            properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        return properties

    async def _run(self) -> None:
        backoff = 0.2
        while not self._closing:
            try:
                async with aiomqtt.Client(
                    self.settings.host,
                    self.settings.port,
                    identifier=self.client_id,
                    username=self.settings.username,
                    password=self.settings.password,
                    protocol=aiomqtt.ProtocolVersion.V5
                    if self.settings.protocol == "5"
                    else aiomqtt.ProtocolVersion.V311,
                    will=self._will() if self._announce else None,
                    keepalive=self.settings.keepalive_s,
                    clean_session=None if self.settings.protocol == "5" else self._clean_session,
                    clean_start=self._clean_session
                    if self.settings.protocol == "5"
                    else paho.MQTT_CLEAN_START_FIRST_ONLY,
                    properties=self._connect_properties(),
                    max_inflight_messages=1000,
                    timeout=10,
                    tls_params=_tls_params(self.settings),
                ) as client:
                    if self._manual_ack:
                        # aiomqtt has no manual-ack API; paho's does: PUBACK is sent only by Ack callbacks,
                        # so a reading is acknowledged after the batch that holds it is committed.
                        client._client.manual_ack_set(True)
                    # Publishers keep thousands of QoS 1 messages in flight on purpose (a batch per
                    # transformer per interval); aiomqtt would warn for each one beyond its default of 10.
                    client.pending_calls_threshold = _PENDING_CALLS_WARNING
                    self._client = client
                    _no_delay(client)
                    for sub in self._subs:
                        await client.subscribe(sub.filter, qos=1)
                    self._connected.set()
                    if self._announce:
                        await self._publish_status("online")
                    _LOGGER.info("connected to %s as %s", self.settings.url, self.client_id)
                    backoff = 0.2
                    async for message in client.messages:
                        await self._dispatch(message)
            except Exception as exc:
                # Whatever ends the connection (a broker gone, or a bug below), the loop reconnects:
                # a bus that stops in silence would leave the service deaf while it looks alive.
                self._connected.clear()
                self._client = None
                if self._closing:
                    return
                self.reconnects += 1
                if isinstance(exc, aiomqtt.MqttError):
                    _LOGGER.warning(
                        "MQTT connection to %s lost (%s); retrying in %.1f s", self.settings.url, exc, backoff
                    )
                else:
                    _LOGGER.exception("MQTT connection loop failed; reconnecting in %.1f s", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self._connected.clear()

    # ------------------------------------------------------------------ publishing
    async def publish(self, channel: Channel[M, P], msg: M, path: P, *, retain: bool | None = None) -> None:
        """Publish ``msg`` on ``channel`` at ``path``."""
        await self.publish_encoded(channel, channel.encode(msg), path, retain=retain)

    async def publish_encoded(
        self, channel: Channel[M, P], payload: bytes, path: P, *, retain: bool | None = None
    ) -> None:
        """Publish a payload already encoded for ``channel`` (hot paths that serialise columns directly)."""
        await self.publish_raw(
            channel.topic(self.base, path),
            payload,
            qos=channel.qos,
            retain=channel.retain if retain is None else retain,
        )

    def publish_nowait(self, channel: Channel[M, P], msg: M, path: P, *, retain: bool | None = None) -> bool:
        """Hand ``msg`` to the MQTT client without waiting for its PUBACK; False when not connected.

        The client still delivers it at the channel's QoS and in order with every other publish of this
        Bus, so awaiting a later :meth:`publish` means this one reached the broker too. For fan-outs of
        many messages: one awaited PUBACK instead of a future (and a timer) per message.
        """
        return self.publish_raw_nowait(
            channel.topic(self.base, path),
            channel.encode(msg),
            qos=channel.qos,
            retain=channel.retain if retain is None else retain,
        )

    def publish_raw_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """:meth:`publish_nowait` for bytes on a topic."""
        client = self._client
        if client is None or not self._connected.is_set():
            return False
        info = client._client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    async def until_unacknowledged(self, pending: int) -> None:
        """Wait until at most ``pending`` messages handed over with :meth:`publish_nowait` await their PUBACK
        (at once when not connected: those wait for the connection anyway).

        paho goes through every unacknowledged message on each PUBACK: a fan-out handed over at once is
        quadratic to acknowledge (an interval of a million meters is 10,200 grid-node messages: 27 % of the
        aggregator's CPU went to paho's ``_update_inflight``). Waiting every few hundred keeps it linear."""
        while True:
            client = self._client
            if client is None or not self._connected.is_set() or len(client._client._out_messages) <= pending:
                return
            await asyncio.sleep(0.002)

    async def publish_raw(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish bytes on a topic, waiting for the connection when it is down."""
        while True:
            await self._connected.wait()
            client = self._client
            if client is None:
                continue
            try:
                await client.publish(topic, payload, qos=qos, retain=retain)
                return
            except aiomqtt.MqttCodeError as exc:
                if exc.rc in (paho.MQTT_ERR_NO_CONN, paho.MQTT_ERR_CONN_LOST):
                    self.publish_retries += 1
                    self._connected.clear()
                    await asyncio.sleep(0.05)
                    continue
                raise
            except aiomqtt.MqttError as exc:
                # aiomqtt raises a plain MqttError when the PUBACK does not come within its timeout (a
                # broker frozen or overloaded). The message may or may not have arrived; publishing it
                # again is safe (consumers de-duplicate) and losing it is not.
                self.publish_retries += 1
                _LOGGER.warning("publish on %s not acknowledged (%s); publishing it again", topic, exc)
                await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ subscribing
    async def subscribe_raw(self, filter_: str, handler: RawHandler, *, concurrent: bool = False) -> None:
        """Call ``handler(topic, payload, ack)`` for every message matching ``filter_``."""
        self._subs.append(_Subscription(filter_, handler, concurrent))
        if self._client is not None and self._connected.is_set():
            await self._client.subscribe(filter_, qos=1)

    async def subscribe(
        self, channel: Channel[M, P], handler: Callable[[M, P], Awaitable[None]], **fixed: str
    ) -> None:
        """Call ``handler(msg, path)`` for every valid message on ``channel``; drop and count invalid ones."""
        await self.subscribe_while(None, channel, handler, **fixed)

    async def subscribe_while(
        self,
        wanted: Callable[[], bool] | None,
        channel: Channel[M, P],
        handler: Callable[[M, P], Awaitable[None]],
        **fixed: str,
    ) -> None:
        """:meth:`subscribe`, but ``wanted()`` is asked before each message is decoded: while it says False
        the message is acknowledged unread (decoding a million readings a minute that nobody looks at cost
        the gateway a quarter of a core)."""

        async def on_raw(topic: str, payload: bytes, ack: Ack) -> None:
            if wanted is not None and not wanted():
                ack()
                return
            try:
                msg, path = channel.decode(self.base, topic, payload)
            except (ValidationError, topics.TopicError) as exc:
                self._drop(topic, payload, exc)
                ack()
                return
            await handler(msg, path)
            ack()

        await self.subscribe_raw(channel.template.filter(self.base, **fixed), on_raw)

    async def include(self, router: Router[D], deps: D) -> None:
        """Subscribe every handler of ``router`` with ``deps`` bound, and serve its commands."""
        for channel, handler, fixed in router._subscriptions:
            bound: Callable[..., Awaitable[None]] = handler

            async def call(msg: Any, path: Any, _h: Callable[..., Awaitable[None]] = bound) -> None:
                await _h(msg, path, deps)

            await self.subscribe(channel, call, **fixed)
        if router._commands:
            # One command table per bus, whatever the number of routers: a second subscription to the
            # command topic would answer "unknown operation" for the first router's commands (and race it).
            subscribe = not self._commands
            for operation, (command, handler) in router._commands.items():
                if command.service != self.service:
                    # The command topic is the service's: a handler for another service's command here
                    # would never be called (and would hide that service's own answer).
                    msg = f"{self.service} cannot serve {command.name}"
                    raise ValueError(msg)
                if operation in self._commands:
                    msg = f"{self.service} already serves the operation {operation!r}"
                    raise ValueError(msg)
                self._commands[operation] = (command, _bind(handler, deps))
            if subscribe:

                async def on_command(topic: str, payload: bytes, ack: Ack) -> None:
                    ack()
                    await self._serve_command(topic, payload)

                await self.subscribe_raw(
                    topics.COMMAND.filter(self.base, service=self.service), on_command, concurrent=True
                )

    def _drop(self, topic: str, payload: bytes, exc: Exception) -> None:
        self.dropped += 1
        _LOGGER.warning("dropped malformed message on %s (%s): %.200r", topic, exc, payload)

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        self.received += 1
        topic = message.topic.value
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        ack = self._ack_for(message)
        if len(payload) > self.settings.max_message_bytes:
            # Never parsed: a huge message would cost every subscriber its memory and time.
            self._drop(topic, payload[:200], ValueError(f"{len(payload)} bytes is over max_message_bytes"))
            ack()
            return
        for sub in self._subs:
            if not message.topic.matches(sub.match):
                continue
            if sub.concurrent:
                task = asyncio.create_task(self._guarded(sub.handler, topic, payload, ack))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                await self._guarded(sub.handler, topic, payload, ack)

    async def _guarded(self, handler: RawHandler, topic: str, payload: bytes, ack: Ack) -> None:
        try:
            await handler(topic, payload, ack)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One bad message must never end the consumer: log with topic and payload, count, go on.
            self.handler_errors += 1
            _LOGGER.exception("handler failed on %s: %.200r", topic, payload)
            ack()

    def _ack_for(self, message: aiomqtt.Message) -> Ack:
        if not self._manual_ack or message.qos == 0:
            return _noop
        client = self._client
        done = False

        def ack() -> None:
            nonlocal done
            if done or client is None:
                return
            done = True
            client._client.ack(message.mid, message.qos)

        return ack

    # ------------------------------------------------------------------ request / reply
    async def call(self, command: Command[Q, R], req: Q | None = None, *, timeout: float | None = None) -> R:
        """Send ``command`` with ``req`` (omitted for a command without arguments) and return its reply.

        Raises :class:`RemoteError` (with the service's status, field and reason) on an error reply,
        :class:`RpcTimeout` when no reply comes in time, and :class:`RemoteError` (502) when the reply is
        not what the command declares.
        """
        if req is None:
            if command.request is not NoArgs:
                msg = f"{command.name} needs a {command.request.__name__}"
                raise TypeError(msg)
            data: dict[str, Any] = {}
        else:
            data = command.encode_request(req)
        reply = await self._request(command.service, command.operation, data, timeout=timeout)
        try:
            return command.decode_reply(reply)
        except ValidationError as exc:
            body = ErrorBody(
                status=502,
                code="bad_reply",
                message=f"{command.name} replied with data that is not its declared reply: {exc.errors()[0]}",
            )
            raise RemoteError(body) from exc

    async def _request(
        self, service: str, operation: str, body: dict[str, Any], *, timeout: float | None
    ) -> Any:
        """Publish a request envelope to ``service``'s ``operation`` and return its reply's data.

        Raises :class:`RemoteError` (with the service's status, field and reason) on an error reply and
        :class:`RpcTimeout` when no reply comes in time.
        """
        correlation_id = f"{self.client_id}-{next(self._counter)}"
        reply_to = topics.REPLY.build(self.base, self._reply_path)
        envelope = Request(correlation_id=correlation_id, reply_to=reply_to, data=body)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        wait = timeout if timeout is not None else self.settings.rpc_timeout_s
        try:
            await self.publish_raw(
                topics.COMMAND.build(self.base, topics.CommandPath(service, operation)),
                envelope.model_dump_json().encode(),
                qos=COMMAND_QOS,
            )
            reply = await asyncio.wait_for(future, wait)
        except TimeoutError as exc:
            msg = f"{service} did not answer {operation} within {wait:.0f} s"
            raise RpcTimeout(msg) from exc
        finally:
            self._pending.pop(correlation_id, None)
        if reply.status == "error":
            raise RemoteError(
                reply.error or ErrorBody(status=500, code="internal", message="error without body")
            )
        return reply.data

    async def _on_reply(self, topic: str, payload: bytes, ack: Ack) -> None:
        ack()
        try:
            reply = Reply.model_validate_json(payload)
        except ValidationError as exc:
            self._drop(topic, payload, exc)
            return
        future = self._pending.get(reply.correlation_id)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _serve_command(self, topic: str, payload: bytes) -> None:
        try:
            request = Request.model_validate_json(payload)
            path = topics.COMMAND.parse(self.base, topic)
            if request.reply_to:
                # Only into a reply namespace: a request must not make a service publish on the clock,
                # a reading or a status topic. (The broker lets only the namespace's user read it.)
                topics.REPLY.parse(self.base, request.reply_to)
        except (ValidationError, topics.TopicError) as exc:
            self._drop(topic, payload, exc)
            return
        reply = await self._answer(path.operation, request)
        if request.reply_to:
            await self.publish_raw(request.reply_to, reply.model_dump_json().encode(), qos=COMMAND_QOS)

    async def _answer(self, operation: str, request: Request) -> Reply:
        entry = self._commands.get(operation)
        if entry is None:
            body = ErrorBody(
                status=404, code="unknown_operation", message=f"{self.service} has no operation {operation!r}"
            )
            return Reply(correlation_id=request.correlation_id, status="error", error=body)
        command, handler = entry
        started = time.perf_counter()
        try:
            try:
                arg = command.decode_request(request.data)
            except ValidationError as exc:
                raise validation_error(exc) from exc
            result = await handler(arg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes an error reply; unexpected ones are logged
            body = error_body(exc)
            if body.status >= 500:
                _LOGGER.exception("%s.%s failed", self.service, operation)
            return Reply(correlation_id=request.correlation_id, status="error", error=body)
        finally:
            RPC_SECONDS.labels(self.service, operation).observe(time.perf_counter() - started)
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else _jsonable(result)
        return Reply(correlation_id=request.correlation_id, status="ok", data=data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _bind(handler: Callable[..., Awaitable[Any]], deps: Any) -> Callable[[Any], Awaitable[Any]]:
    """``handler(request, deps)`` with its router's deps fixed (the table is shared by every router)."""

    async def bound(arg: Any) -> Any:
        return await handler(arg, deps)

    return bound


def _tls_params(settings: MqttSettings) -> aiomqtt.TLSParameters | None:
    """TLS for ``mqtts://`` URLs: the configured CA (else the system's) and the client certificate, if any."""
    if not settings.tls:
        return None
    return aiomqtt.TLSParameters(
        ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file
    )


def _strip_share(filter_: str) -> str:
    # `$share/group/a/b/#` matches the same topics as `a/b/#`.
    if filter_.startswith("$share/"):
        return filter_.split("/", 2)[2]
    return filter_


def _noop() -> None:
    return None


def _no_delay(client: aiomqtt.Client) -> None:
    # Small MQTT packets (PUBACK, a command, its reply) otherwise wait out Nagle's algorithm against the
    # peer's delayed ACK: about 40 ms per hop, 88 ms per request/reply on loopback. Brokers need the same
    # (mosquitto: `set_tcp_nodelay true`) for the round trip to fall to about 1 ms.
    sock = client._client.socket()
    if isinstance(sock, socket.socket) and sock.family in {socket.AF_INET, socket.AF_INET6}:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
