"""The World Engine adapter's multi-step writes as single meter-sim commands (issue 13): ``relink``,
``create_meter_linked``, ``create_er_linked``, ``update_meter_linked`` and ``update_er_linked`` each run in
one transaction, so a failure leaves no half-made meter or household, no half-applied update and no link
released without its replacement."""

from __future__ import annotations

import pytest

from gridsim_meter_sim.__main__ import serve
from gridsim_shared.bus import Bus
from gridsim_shared.commands import meter_sim
from gridsim_shared.db import open_pool
from gridsim_shared.errors import RemoteError
from gridsim_shared.schemas.meters import (
    ErCreate,
    ErListRequest,
    ErRef,
    GridNodeCreate,
    LinkRequest,
    MeterCreate,
    MeterListRequest,
)
from gridsim_shared.schemas.worldengine import (
    ErCreateLinked,
    ErUpdateLinked,
    MeterCreateLinked,
    MeterUpdateLinked,
)
from gridsim_shared.settings import Settings
from gridsim_shared.testing import running

pytestmark = pytest.mark.integration


async def test_links_move_and_creations_link_in_one_transaction(settings: Settings) -> None:
    async with running(serve, settings=settings), Bus(settings.mqtt, "test-links") as bus:
        await bus.call(meter_sim.CREATE_GRID_NODE, GridNodeCreate(code="u", name="U", level="utility"))
        await bus.call(
            meter_sim.CREATE_GRID_NODE, GridNodeCreate(code="f", name="F", level="feeder", parent_id="u")
        )
        await bus.call(
            meter_sim.CREATE_GRID_NODE,
            GridNodeCreate(code="t", name="T", level="transformer", parent_id="f", capacity_kVA=50),
        )
        home = await bus.call(meter_sim.CREATE_ER, ErCreate(name="Home", type="consumer"))
        shop = await bus.call(meter_sim.CREATE_ER, ErCreate(name="Shop", type="prosumer"))
        a = await bus.call(meter_sim.CREATE_METER, MeterCreate(meter_id="A", transformer_id="t"))
        b = await bus.call(meter_sim.CREATE_METER, MeterCreate(meter_id="B", transformer_id="t"))
        await bus.call(meter_sim.LINK, LinkRequest(meter_id=a.id, er_id=home.id))
        await bus.call(meter_sim.LINK, LinkRequest(meter_id=b.id, er_id=shop.id))

        # meter A takes the shop: A lets go of the home, B of the shop, in the same transaction
        moved = await bus.call(meter_sim.RELINK, LinkRequest(meter_id=a.id, er_id=shop.id))
        assert moved.er_id == shop.id
        meters = {m.meter_id: m.er_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert meters == {"A": shop.id, "B": None}

        # a meter created with a link to a household that does not exist: nothing is created
        with pytest.raises(RemoteError) as missing:
            await bus.call(
                meter_sim.CREATE_METER_LINKED,
                MeterCreateLinked(meter_id="C", transformer_id="t", link_er_id=999),
            )
        assert missing.value.status == 404
        codes = {m.meter_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert "C" not in codes
        linked = await bus.call(
            meter_sim.CREATE_METER_LINKED,
            MeterCreateLinked(meter_id="C", transformer_id="t", link_er_id=home.id),
        )
        assert linked.er_id == home.id

        # a household created with a link to a meter that does not exist: nothing is created
        ers_before = len(await bus.call(meter_sim.LIST_ERS, ErListRequest()))
        with pytest.raises(RemoteError) as no_meter:
            await bus.call(
                meter_sim.CREATE_ER_LINKED, ErCreateLinked(name="Flat", type="consumer", link_meter_id="NOPE")
            )
        assert no_meter.value.status == 404
        assert len(await bus.call(meter_sim.LIST_ERS, ErListRequest())) == ers_before
        flat = await bus.call(
            meter_sim.CREATE_ER_LINKED, ErCreateLinked(name="Flat", type="consumer", link_meter_id="B")
        )
        meters = {m.meter_id: m.er_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert meters == {"A": shop.id, "B": flat.id, "C": home.id}

        # an update whose link fails changes nothing: not the code, not the subscription, not the link
        with pytest.raises(RemoteError) as bad_link:
            await bus.call(
                meter_sim.UPDATE_METER_LINKED,
                MeterUpdateLinked(meter="A", meter_id="A2", link_er_id=999, dfp_subscription_id="SUB-1"),
            )
        assert (bad_link.value.status, bad_link.value.field) == (404, "er_id")
        meters = {m.meter_id: m.er_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert meters == {"A": shop.id, "B": flat.id, "C": home.id}
        # the whole change at once: renamed, the home taken from C, the subscription recorded
        moved = await bus.call(
            meter_sim.UPDATE_METER_LINKED,
            MeterUpdateLinked(meter="A", meter_id="A2", link_er_id=home.id, dfp_subscription_id="SUB-1"),
        )
        assert (moved.meter_id, moved.er_id) == ("A2", home.id)
        meters = {m.meter_id: m.er_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert meters == {"A2": home.id, "B": flat.id, "C": None}
        async with open_pool(settings.db) as pool, pool.connection() as conn:
            cur = await conn.execute("select dfp_subscription_id from meters where id = %s", (a.id,))
            assert await cur.fetchone() == ("SUB-1",)
        # link_er_id sent as null unlinks; not sent, the link stays
        kept = await bus.call(meter_sim.UPDATE_METER_LINKED, MeterUpdateLinked(meter=a.id, city="Pune"))
        assert (kept.city, kept.er_id) == ("Pune", home.id)
        unlinked = await bus.call(
            meter_sim.UPDATE_METER_LINKED, MeterUpdateLinked(meter=a.id, link_er_id=None)
        )
        assert unlinked.er_id is None

        # an ER update whose link fails keeps its old name; one that succeeds renames and moves it together
        with pytest.raises(RemoteError) as bad_meter:
            await bus.call(
                meter_sim.UPDATE_ER_LINKED, ErUpdateLinked(er_id=flat.id, name="Loft", link_meter_id="NOPE")
            )
        assert (bad_meter.value.status, bad_meter.value.field) == (404, "meter_id")
        assert (await bus.call(meter_sim.GET_ER, ErRef(er_id=flat.id))).name == "Flat"
        loft = await bus.call(
            meter_sim.UPDATE_ER_LINKED, ErUpdateLinked(er_id=flat.id, name="Loft", link_meter_id="C")
        )
        assert (loft.name, loft.meter_code) == ("Loft", "C")
        meters = {m.meter_id: m.er_id for m in await bus.call(meter_sim.LIST_METERS, MeterListRequest())}
        assert meters == {"A2": None, "B": None, "C": flat.id}
        alone = await bus.call(meter_sim.UPDATE_ER_LINKED, ErUpdateLinked(er_id=flat.id, link_meter_id=None))
        assert alone.meter_id is None
