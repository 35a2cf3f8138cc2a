"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

The whole system runs in-process: meter-sim (demo world, clock stopped), aggregator, billing and
feasibility as services, and the gateway app served by uvicorn on a free port so the browser has a real
HTTP server. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gridsim_aggregator.__main__ import serve as serve_aggregator
from gridsim_billing.__main__ import serve as serve_billing
from gridsim_feasibility.__main__ import serve as serve_feasibility
from gridsim_gateway.main import create_app
from gridsim_meter_sim.__main__ import serve as serve_meter_sim
from gridsim_shared import channels
from gridsim_shared.bus import Bus
from gridsim_shared.events import VoltageExcursionDetails, VoltageExcursionEvent
from gridsim_shared.ids import slug
from gridsim_shared.settings import Settings, SimSettings
from gridsim_shared.testing import running
from gridsim_shared.topics import EventPath
from gridsim_utility.__main__ import serve as serve_utility

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(240)]

CHROMIUM = Path("/usr/bin/chromium")
# platform-notes §5: Debian's chromium, headless, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's chromium; the tests skip without it, except in CI (where `.ci/run` installs it)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set, so this fails instead of skipping")
        pytest.skip(reason)
    return CHROMIUM


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def serving_gateway(settings: Settings) -> AsyncIterator[str]:
    """The gateway app on a real port in this event loop; yields its base URL."""
    sock = _free_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), log_level="warning", lifespan="on", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 10)
        sock.close()


async def _until(check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll an async ``check`` until it returns something truthy."""
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(0.2)
    msg = f"timed out waiting for {what}"  # pragma: no cover - asyncio.timeout raises first
    raise AssertionError(msg)


@pytest.fixture
def demo_settings(settings: Settings) -> Settings:
    """The test's settings with the demo world loaded and the clock stopped (the test steps it)."""
    sim = settings.sim.model_copy(update={"demo_world": True, "autostart": False})
    assert isinstance(sim, SimSettings)
    return settings.model_copy(update={"sim": sim})


async def _settled(page: Any, quiet_s: float = 3.0) -> tuple[str | None, str | None] | None:
    """The chart's point count and the clock text, when neither changed for ``quiet_s`` seconds."""
    before = (await page.get_attribute("#chart", "data-points"), await page.text_content("#clock-time"))
    await asyncio.sleep(quiet_s)
    after = (await page.get_attribute("#chart", "data-points"), await page.text_content("#clock-time"))
    return after if after == before else None


async def _clock_ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/simulation-time")).status_code == 200


async def _grid(client: httpx.AsyncClient) -> dict[str, Any] | None:
    res = await client.get("/grid")
    if res.status_code != 200:
        return None
    grid: dict[str, Any] = res.json()
    return grid if grid["meters"] else None


# Probes answer 503 by design while a service is degraded (the page shows that); every other 5xx, and
# any 4xx the page itself caused, is a bug.
_PROBES = ("/health", "/readyz", "/livez")


def _unexpected_status(status: int, url: str) -> bool:
    path = httpx.URL(url).path
    return status >= 400 and not (status == 503 and path in _PROBES)


async def test_dashboard_drives_the_live_grid(chromium: Path, demo_settings: Settings) -> None:
    """Load, tree, chart growing with steps, pause, feasibility and bill, with no console errors."""
    from playwright.async_api import async_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with (
        running(
            serve_meter_sim,
            serve_aggregator,
            serve_billing,
            serve_feasibility,
            serve_utility,
            settings=demo_settings,
        ),
        serving_gateway(demo_settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as api,
        async_playwright() as pw,
    ):
        grid = await _until(lambda: _grid(api), what="the demo world in GET /grid")
        # The page's first requests need the clock (503 clock_not_ready before meter-sim stored it).
        await _until(lambda: _clock_ready(api), what="the simulation clock")
        browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1440, "height": 1000})
            problems: list[str] = []
            # Chromium logs every non-2xx fetch as "Failed to load resource" without its URL; the
            # responses themselves are checked below with their URLs, so those lines are left out here.
            page.on(
                "console",
                lambda m: (
                    problems.append(m.text)
                    if m.type == "error" and not m.text.startswith("Failed to load resource")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "response",
                lambda r: (
                    problems.append(f"HTTP {r.status} from {r.request.method} {r.url}")
                    if _unexpected_status(r.status, r.url)
                    else None
                ),
            )

            await page.goto(base + "/")
            await page.wait_for_selector("body[data-live=ready]")

            # The tree shows the demo world: every utility, feeder and transformer by name.
            transformers = page.locator('#tree .node[data-level="transformer"]')
            await transformers.first.wait_for()
            assert await transformers.count() == grid["transformers"]
            for utility in grid["utilities"]:
                assert (
                    await page.locator(
                        f'#tree .node[data-level="utility"][data-id="{utility["id"]}"]'
                    ).count()
                    == 1
                )
            summary = await page.text_content("#tree-summary")
            assert summary == f"{grid['transformers']} transformers · {grid['meters']} meters"

            # A meter is selected; stepping the clock from the page adds points to its chart.
            chart = page.locator("#chart")
            assert (await page.text_content("#chart-title") or "").startswith("Meter ")
            before = int(await chart.get_attribute("data-points") or 0)
            for _ in range(3):
                await page.click("[data-testid=step]")
                await page.wait_for_function(
                    "n => Number(document.querySelector('#chart').dataset.points) > n", arg=before
                )
                now = int(await chart.get_attribute("data-points") or 0)
                assert now > before
                before = now
            assert await page.locator("#chart path.series.consumption").get_attribute("d")
            # Transformer rollups arrived and colour the loading bars.
            await page.wait_for_selector(
                ".load[data-loading=normal], .load[data-loading=warning], .load[data-loading=critical]"
            )
            # ... and carry each transformer's health index (IEEE C57.91 aging, docs/grid-health.md).
            health = page.locator(".load .health[data-health]").first
            await health.wait_for()
            assert (await health.text_content() or "").startswith("HI ")
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-stepped.png"), full_page=True)

            # A transformer's chart: its interval rollups since the steps.
            await transformers.first.click()
            await page.wait_for_function(
                "document.querySelector('#chart-title').textContent.startsWith('Transformer ')"
            )
            await page.wait_for_function("Number(document.querySelector('#chart').dataset.points) > 0")
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-transformer.png"))
            meter = page.locator('#tree .node[data-level="meter"]').first
            await meter.click()
            await page.wait_for_function(
                "document.querySelector('#chart-title').textContent.startsWith('Meter ')"
            )
            await page.wait_for_function("Number(document.querySelector('#chart').dataset.points) > 0")
            before = int(await chart.get_attribute("data-points") or 0)

            # Resume: the chart grows on its own; pause: it stops.
            await page.select_option("[data-testid=speed]", "360")
            await page.click("[data-testid=resume]")
            await page.wait_for_selector("#clock-state.running")
            await page.wait_for_function(
                "n => Number(document.querySelector('#chart').dataset.points) >= n + 5", arg=before
            )
            await page.click("[data-testid=pause]")
            await page.wait_for_selector("#clock-state.paused")
            # Intervals already simulated still land after the pause (their watermark can trail by
            # seconds on a loaded machine); then nothing may move. A clock that kept running would
            # never settle, and this wait would time out.
            paused_points, paused_clock = await _until(
                lambda: _settled(page), timeout=60, what="the paused chart and clock to settle"
            )
            await asyncio.sleep(2.0)
            assert await chart.get_attribute("data-points") == paused_points
            assert await page.text_content("#clock-time") == paused_clock

            # An event on the bus (as the aggregator publishes a voltage excursion) reaches the list and
            # marks the selected meter's chart.
            code = (await page.text_content("#chart-title") or "").removeprefix("Meter ")
            clock = (await api.get("/simulation-time")).json()
            event = VoltageExcursionEvent(
                type="voltage_high",
                severity="warning",
                timestamp=clock["current_datetime"],
                subject=code,
                message=f"{code}: 254.2 V, above the 253 V upper limit",
                data=VoltageExcursionDetails(meter_id=1, avg_voltage=254.2, low_v=207.0, high_v=253.0),
            )
            async with Bus(demo_settings.mqtt, "browser-test") as bus:
                await bus.publish(channels.EVENT, event, EventPath(type="voltage_high", subject=slug(code)))
            await page.locator('#events li[data-type="voltage_high"]').wait_for()
            await page.locator('#chart .marker[data-type="voltage_high"]').wait_for()

            # A load spike on the selected meter (+20 kW for ten minutes) shows on its chart: a higher peak
            # and a `spike` marker, once the clock steps past its start.
            peak_before = float(await chart.get_attribute("data-max-consumption-kw") or 0)
            created = await api.post(
                "/spikes",
                json={"kind": "load", "scope": "meter", "target": code, "kw": 20, "duration_s": 600},
            )
            assert created.status_code == 201, created.text
            points = int(await chart.get_attribute("data-points") or 0)
            await page.click("[data-testid=step]")
            await page.wait_for_function(
                "n => Number(document.querySelector('#chart').dataset.points) > n", arg=points
            )
            await page.wait_for_function(
                "kw => Number(document.querySelector('#chart').dataset.maxConsumptionKw) > kw + 15",
                arg=peak_before,
            )
            await page.locator('#chart .marker[data-type="spike"]').wait_for()

            # Feasibility: the form answers and the answer is drawn on the transformer plot.
            await page.locator("#feas-plot svg circle.tx").first.wait_for()
            await page.click("#feas-form button[type=submit]")
            verdict = page.locator("#feas-result .verdict")
            await verdict.wait_for()
            assert await verdict.get_attribute("data-status") in {"feasible", "not_feasible"}
            await page.locator("[data-testid=feas-request]").wait_for()

            # A bill for the selected meter and the clock's month.
            await page.click("#bill-form button[type=submit]")
            await page.locator("[data-testid=bill-table]").wait_for()
            # The feeders' IEEE 1366 indices for that month (no outage in the demo world: SAIFI 0).
            await page.click("#reliability-form button[type=submit]")
            await page.locator("[data-testid=reliability-table]").wait_for()
            assert await page.locator("[data-testid=reliability-table] tr").count() > 1

            # The utility card: the current dynamic price (forecasts need a simulated week of history).
            await page.locator("#util-price strong").wait_for()
            await page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

            assert problems == [], f"console errors or failed requests: {problems}"
        except BaseException:
            with contextlib.suppress(Exception):
                await page.screenshot(path=str(SCREENSHOTS / "dashboard-failure.png"), full_page=True)
            raise
        finally:
            await browser.close()


async def test_dashboard_shows_the_worlds_local_time_and_a_bounded_chart(
    chromium: Path, demo_settings: Settings
) -> None:
    """Times in the world's zone (UTC on hover); the live chart keeps a day of points, sorted, however long
    the page stays open (hourly readings: 30 steps are more than a day)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from playwright.async_api import async_playwright

    settings = demo_settings.model_copy(
        update={
            "sim": demo_settings.sim.model_copy(update={"interval_s": 3600}),
            "billing": demo_settings.billing.model_copy(update={"timezone": "America/Los_Angeles"}),
        }
    )
    async with (
        running(serve_meter_sim, serve_aggregator, settings=settings),
        serving_gateway(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as api,
        async_playwright() as pw,
    ):
        await _until(lambda: _grid(api), what="the demo world in GET /grid")
        await _until(lambda: _clock_ready(api), what="the simulation clock")
        browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(base + "/")
            await page.wait_for_selector("body[data-live=ready]")
            await page.wait_for_function("document.querySelector('#clock-zone').textContent.length > 0")
            clock = (await api.get("/simulation-time")).json()
            local = datetime.fromisoformat(clock["current_datetime"]).astimezone(
                ZoneInfo("America/Los_Angeles")
            )
            assert await page.text_content("#clock-zone") == local.strftime("%Z")  # PDT in June
            await page.wait_for_function(
                "t => document.querySelector('#clock-time').textContent === t", arg=local.strftime("%H:%M")
            )
            assert "UTC" in (await page.get_attribute(".clock-time", "title") or "")

            response = await api.post("/simulation/step", json={"intervals": 30})
            assert response.status_code == 200, response.text
            last = datetime.fromisoformat(response.json()["last_interval"]).timestamp() * 1000
            await page.wait_for_function("t => state.lastFetched === t", arg=last, timeout=60_000)
            points = await page.evaluate("state.points.map((p) => p.t)")
            assert points == sorted(points)
            assert 0 < len(points) <= 25  # a day of hourly points (both ends), not all 30
            assert int(await page.get_attribute("#chart", "data-points") or 0) <= 25
        finally:
            await browser.close()


async def test_dashboard_pages_a_grid_too_big_for_one_tree(chromium: Path, demo_settings: Settings) -> None:
    """Above the tree's limits (GET /grid answers 422) the tree is paged level by level: the utilities first,
    a node's children when it is unfolded (GET /grid/children), and the filter searches (GET /grid/search);
    nothing asks for the whole tree, with or without meters (five million meters are 51,000 nodes)."""
    from playwright.async_api import async_playwright

    settings = demo_settings.model_copy(
        update={"gateway": demo_settings.gateway.model_copy(update={"grid_tree_max_meters": 100})}
    )
    async with (
        running(serve_meter_sim, settings=settings),
        serving_gateway(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=120) as api,
        async_playwright() as pw,
    ):
        await _until(lambda: _clock_ready(api), what="the simulation clock")
        assert (await api.get("/grid")).status_code == 422
        browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            asked: list[str] = []
            page.on("request", lambda request: asked.append(httpx.URL(request.url).path))
            await page.goto(base + "/")
            utility = page.locator('#tree .node[data-level="utility"]')
            await utility.wait_for()
            assert await utility.locator(".meta").text_content() == "3 feeders"
            assert await page.locator('#tree .node[data-level="feeder"]').count() == 0  # not loaded yet

            await utility.click()
            feeder = page.locator('#tree .node[data-level="feeder"]').first
            await feeder.wait_for()
            assert await page.locator('#tree .node[data-level="feeder"]').count() == 3
            assert await feeder.locator(".meta").text_content() == "5 transformers"
            await feeder.click()
            transformer = page.locator('#tree .node[data-level="transformer"]').first
            await transformer.wait_for()
            assert await page.locator('#tree .node[data-level="transformer"]').count() == 5
            await transformer.click()
            meter = page.locator('#tree .node[data-level="meter"]').first
            await meter.wait_for()
            code = await meter.get_attribute("data-code")
            await meter.click()
            assert await page.text_content("#chart-title") == f"Meter {code}"

            await page.fill("#tree-filter", (code or "")[:-1])
            await page.locator("#tree-results .node").first.wait_for()
            assert code in await page.locator("#tree-results").inner_text()
            assert "/grid/children" in asked
            assert "/grid/search" in asked
            assert asked.count("/grid") == 1  # the refused whole tree, never asked again without meters
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-paged.png"))
        finally:
            await browser.close()
