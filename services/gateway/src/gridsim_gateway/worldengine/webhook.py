"""The World Engine's grid-load alert (§1.7): ``POST gateway.overload_webhook_url`` when a transformer's
loading passes ``gateway.overload_webhook_share`` of its capacity.

It listens to the aggregator's retained transformer rollups (one per transformer per interval, the same
ones the gateway's live state keeps) and posts, for every rollup above the share, the World Engine's body
``{"transformer": {...scalars, "substation": {...}}, "totalBaseKWh": load}`` plus gridsim's timestamp and
loading. A post that fails is logged and not retried: the next interval posts again while the overload lasts.

With ``gateway.overload_webhook_secret`` set, each post is signed so a receiver can trust it:
``X-Gridsim-Timestamp`` (Unix seconds) and ``X-Gridsim-Signature: sha256=<hex>``, the HMAC-SHA256 of
``"{timestamp}." + body`` under the secret. :func:`verify_signature` is the receiver's check (it also refuses
a timestamp older than five minutes, so a captured post cannot be replayed later).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from gridsim_gateway.worldengine.entities import TRANSFORMER, iso
from gridsim_gateway.worldengine.sqlquery import find_one
from gridsim_gateway.worldengine.strapi import Populate
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.ids import TransformerPath
from gridsim_shared.messages import Rollup
from gridsim_shared.settings import Settings

__all__ = ["OverloadWebhook", "loading_share", "overload_webhook", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Gridsim-Signature"
TIMESTAMP_HEADER = "X-Gridsim-Timestamp"
_MAX_AGE_S = 300

_LOGGER = logging.getLogger(__name__)


def loading_share(rollup: Rollup) -> float | None:
    """The rollup's load as a share of the transformer's rating (None without a rating): the aggregator's
    ``loading_pct``, the one definition of loading (apparent power, export included, over the rating)."""
    return None if rollup.loading_pct is None else rollup.loading_pct / 100


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float | None = None
) -> bool:
    """True when ``signature`` is ``body``'s at ``timestamp`` under ``secret`` and the timestamp is recent."""
    if not timestamp.isdigit():
        return False
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > _MAX_AGE_S:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


class OverloadWebhook:
    """Posts the alert for each overloaded transformer rollup; counts what it sent and what failed."""

    def __init__(
        self,
        url: str,
        share: float,
        pool: AsyncConnectionPool,
        client: httpx.AsyncClient,
        *,
        secret: str | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.share = share
        self.pool = pool
        self.client = client
        self.sent = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_rollup(self, rollup: Rollup, _path: TransformerPath) -> None:
        """Post in the background when the rollup is above the share (never blocks the bus)."""
        share = loading_share(rollup)
        if share is None or share <= self.share:
            return
        task = asyncio.create_task(self._post(rollup, share))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def body(self, rollup: Rollup, share: float) -> dict[str, Any]:
        """The World Engine's alert body for ``rollup``."""
        async with self.pool.connection() as conn:
            transformer = await find_one(conn, TRANSFORMER, rollup.node_id, Populate.parse("substation"))
        if transformer is None:  # deleted since: still say which one it was
            transformer = {
                "id": rollup.node_id,
                "code": rollup.node_code,
                "max_capacity_KW": rollup.capacity_kVA,
            }
        return {
            "transformer": transformer,
            "totalBaseKWh": rollup.apparent_kVA,
            # additive: the interval's simulated time and the loading that passed the share
            "timestamp": iso(rollup.timestamp),
            "loading_percentage": round(share * 100, 2),
        }

    async def _post(self, rollup: Rollup, share: float) -> None:
        try:
            content = json.dumps(await self.body(rollup, share)).encode()
            headers = {"Content-Type": "application/json"}
            if self.secret:
                timestamp = int(time.time())
                headers[TIMESTAMP_HEADER] = str(timestamp)
                headers[SIGNATURE_HEADER] = sign(self.secret, timestamp, content)
            response = await self.client.post(self.url, content=content, headers=headers)
            response.raise_for_status()
            self.sent += 1
        except (httpx.HTTPError, OSError) as exc:
            self.failed += 1
            _LOGGER.warning("overload webhook %s failed for %s: %s", self.url, rollup.node_code, exc)

    async def drain(self) -> None:
        """Wait for the posts in flight."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=10)


@asynccontextmanager
async def overload_webhook(
    bus: Bus, pool: AsyncConnectionPool, settings: Settings
) -> AsyncIterator[OverloadWebhook | None]:
    """Run the webhook while the gateway runs (nothing when no URL is configured)."""
    url = settings.gateway.overload_webhook_url
    if not url:
        yield None
        return
    async with httpx.AsyncClient(timeout=10) as client:
        hook = OverloadWebhook(
            url,
            settings.gateway.overload_webhook_share,
            pool,
            client,
            secret=settings.gateway.overload_webhook_secret,
        )
        await bus.subscribe(channels.ROLLUP_TRANSFORMER, hook.on_rollup)
        try:
            yield hook
        finally:
            await hook.drain()
