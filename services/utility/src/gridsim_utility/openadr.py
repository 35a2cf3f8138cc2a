"""The utility's OpenADR 2.0b VTN (openleadr): VENs register, then receive every DR event as it is made.

Events go out as OpenADR ``simple`` level signals (1–3); critical-peak events as ``ELECTRICITY_PRICE``
price signals carrying the event price. A changed event is cancelled and re-issued under a new id; a
cancelled one is cancelled. OpenADR runs on the wall clock (openleadr drops events whose end has passed),
so an event's simulated window is mapped to the wall clock at the simulation's speed (at 1× while the
clock is paused, e.g. in step mode); the simulated window is in the event's ``vtn_comment``. Registrations are stored
(``openadr_vens``) so a VEN keeps its ids across restarts; each VEN's opt-in/opt-out is logged in the DR
log. Messages are not signed (no certificates are configured); a deployment facing real VENs would give
the VTN a certificate and fingerprints (openleadr's ``cert``/``key``/``ven_lookup``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from openleadr import OpenADRServer  # type: ignore[import-untyped]

from gridsim_shared.schemas.utility import DrEvent
from gridsim_utility import repository as repo
from gridsim_utility.handlers import Deps, sim_now

__all__ = ["Vtn"]

_LOGGER = logging.getLogger(__name__)
PATH_PREFIX = "/OpenADR2/Simple/2.0b"


class Vtn:
    """An openleadr server bound to the utility's events."""

    def __init__(self, deps: Deps) -> None:
        u = deps.settings.utility
        self.deps = deps
        self.server = OpenADRServer(
            vtn_id=u.openadr_vtn_id,
            http_host=u.openadr_host,
            http_port=u.openadr_port,
            ven_lookup=self._lookup,
            verify_message_signatures=False,
            show_fingerprint=False,
            # VENs poll this often (real seconds): events reach them within a second or two.
            requested_poll_freq=timedelta(seconds=1),
        )
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        # Each event's revision per VTN event id, so a change goes out under a new id.
        self._revision: dict[int, int] = {}
        deps.on_event.append(self.push)

    @property
    def url(self) -> str:
        u = self.deps.settings.utility
        return f"http://{u.openadr_host}:{u.openadr_port}{PATH_PREFIX}"

    async def start(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # openleadr prints a banner
            await self.server.run()
        _LOGGER.info("OpenADR 2.0b VTN at %s", self.url)

    async def stop(self) -> None:
        await self.server.stop()

    # ------------------------------------------------------------ handlers (openleadr calls these)
    async def _register(self, info: dict[str, Any]) -> tuple[str, str] | bool:
        name = str(info.get("ven_name") or "")
        if not name:
            return False
        async with self.deps.pool.connection() as conn, conn.transaction():
            ven_id, registration_id = await repo.register_ven(
                conn, f"ven-{secrets.token_hex(6)}", name, f"reg-{secrets.token_hex(6)}"
            )
            await repo.log(
                conn, await sim_now(self.deps, conn), "openadr.register", {"ven_id": ven_id, "ven_name": name}
            )
        return ven_id, registration_id

    async def _lookup(self, ven_id: str) -> dict[str, Any] | None:
        """What openleadr needs to know a VEN (None: it is asked to register again)."""
        async with self.deps.pool.connection() as conn:
            row = await repo.ven(conn, ven_id)
        return None if row is None else {**row, "fingerprint": None}

    async def _register_report(self, _report: dict[str, Any]) -> None:
        return None  # the VTN asks for no telemetry: readings come from the simulated meters

    # ------------------------------------------------------------ events
    def _vtn_event_id(self, event_id: int) -> str:
        return f"gridsim-dr-{event_id}-r{self._revision.get(event_id, 0)}"

    async def push(self, event: DrEvent, action: str) -> None:
        """Deliver a created, modified or cancelled event to every registered VEN."""
        async with self.deps.pool.connection() as conn:
            vens = [v for v, _ in await repo.vens(conn)]
            program = await repo.program(conn, event.program_id)
        for ven_id in vens:
            if action in ("modified", "cancelled"):
                self.server.cancel_event(ven_id, self._vtn_event_id(event.id))
        if action == "modified":
            self._revision[event.id] = self._revision.get(event.id, 0) + 1
        if action == "cancelled":
            return
        for ven_id in vens:
            self._add(ven_id, event, program)

    def _wall(self, event: DrEvent) -> tuple[datetime, timedelta]:
        """The event's start and duration on the wall clock, at the simulation's speed."""
        clock = self.deps.live.clock
        speed = clock.speed if clock is not None and clock.state == "running" else 1.0
        sim_now = clock.current_datetime if clock is not None else event.created_sim
        start = datetime.now(UTC) + (event.start - sim_now) / speed
        return start, (event.end - event.start) / speed

    def _add(self, ven_id: str, event: DrEvent, program: dict[str, Any] | None) -> None:
        cpp = program is not None and program["kind"] == "cpp" and program["cpp_rate"]
        start, duration = self._wall(event)
        intervals = [
            {
                "dtstart": start,
                "duration": duration,
                "signal_payload": float(program["cpp_rate"]) if cpp and program else float(event.level),
            }
        ]
        self.server.add_event(
            ven_id=ven_id,
            signal_name="ELECTRICITY_PRICE" if cpp else "simple",
            signal_type="price" if cpp else "level",
            intervals=intervals,
            event_id=self._vtn_event_id(event.id),
            market_context=f"oadr://gridsim/program/{event.program_id}",
            callback=self._opted(event.id),
        )
        # openleadr has no argument for the comment: set it on the event it queued.
        queued = self.server.events[ven_id][-1]
        queued.event_descriptor.vtn_comment = (
            f"gridsim DR event {event.id}, simulated {event.start.isoformat()} to {event.end.isoformat()}"
        )

    def _opted(self, dr_event: int) -> Any:
        # openleadr calls it with these keyword names.
        async def callback(ven_id: str, event_id: str, opt_type: str) -> None:
            async with self.deps.pool.connection() as conn:
                await repo.log(
                    conn, await sim_now(self.deps, conn), "openadr.response",
                    {"ven_id": ven_id, "event_id": dr_event, "vtn_event_id": event_id, "opt": opt_type},
                )  # fmt: skip

        return callback
