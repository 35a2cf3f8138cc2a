"""Utility-sized worlds: ``gridsim world generate --meters N`` writes one, :func:`load_world_bulk` loads it.

A generated world is an ordinary world file (``docs/entities.md``): one utility, feeders of
``transformers_per_feeder`` transformers, ``meters_per_transformer`` meters under each, every meter linked
to a home (a consumer, or one in ``prosumer_every`` a prosumer with a solar array). It is written as a
stream, a meter per line, so a million meters never sit in memory as objects.

:func:`load_world` creates each entry through the API's repository functions, a few statements per
meter: right for the demo world, hours for a million. :func:`load_world_bulk` loads the same file with the
same result: the grid nodes through ``create_grid_node`` (a few thousand), then the energy resources, DERs
and meters with one ``COPY`` each. It enforces the rules ``create_meter`` and ``link`` would (codes unique
ignoring case, the transformer exists, a parent meter comes first, is not linked itself and shares the
transformer), and needs every meter to name its transformer or its parent meter; a world that leaves a
meter to the nearest transformer is loaded the ordinary way (:func:`load_any_world`).
"""

from __future__ import annotations

import asyncio
import random
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from gridsim_meter_sim import grid_repository, repository
from gridsim_meter_sim.world import WorldFile, WorldMeter, WorldSummary, load_world, read_world
from gridsim_shared.errors import ConflictError, InvalidError, NotFoundError
from gridsim_shared.ids import slug
from gridsim_shared.schemas.meters import ApplianceCount, GridNodeCreate

__all__ = ["BULK_FROM_METERS", "generate_world", "load_any_world", "load_world_bulk"]

# From this many meters a world file is loaded in bulk (below it the ordinary path is fast enough).
BULK_FROM_METERS = 2_000

# Homes: (appliance, count) sets drawn per meter; prosumers add a solar array.
_HOMES: tuple[tuple[tuple[str, int], ...], ...] = (
    (("LED Bulb (10W)", 8), ("Refrigerator", 1), ("Television (LED)", 1), ("Washing Machine", 1)),
    (("LED Bulb (10W)", 12), ("Refrigerator", 1), ("Microwave Oven", 1), ("Air Conditioner (1.5 Ton)", 1)),
    (("LED Bulb (10W)", 6), ("Refrigerator", 1), ("Electric Geyser", 1), ("Laptop Charger", 2)),
    (("LED Bulb (10W)", 10), ("Refrigerator", 1), ("Room Heater", 1), ("Electric Kettle", 1)),
)


def generate_world(
    out: Path,
    meters: int,
    *,
    meters_per_transformer: int = 100,
    transformers_per_feeder: int = 50,
    prosumer_every: int = 10,
    seed: int = 1,
) -> dict[str, int]:
    """Write a world of ``meters`` meters to ``out`` (deterministic for a seed); returns its counts."""
    rng = random.Random(seed)
    transformers = -(-meters // meters_per_transformer)
    feeders = -(-transformers // transformers_per_feeder)
    lat0, lon0 = 37.30, -122.50  # a 0.5° square south of San Francisco
    with out.open("wb") as f:
        f.write(b'{"version": 1, "name": ')
        f.write(orjson.dumps(f"generated {meters:,} meters"))
        f.write(b', "description": "gridsim world generate", "grid": [\n')
        nodes: list[dict[str, Any]] = [
            {"code": "gen-utility", "name": "Generated Utility", "level": "utility"}
        ]
        for i in range(feeders):
            nodes.append(
                {
                    "code": f"gen-f{i:04d}",
                    "name": f"Feeder {i}",
                    "level": "feeder",
                    "parent_id": "gen-utility",
                }
            )
        for t in range(transformers):
            nodes.append(
                {
                    "code": f"gen-t{t:06d}",
                    "name": f"Transformer {t}",
                    "level": "transformer",
                    "parent_id": f"gen-f{t // transformers_per_feeder:04d}",
                    "capacity_kVA": 250.0 * max(1, meters_per_transformer) / 100,
                    "latitude": round(lat0 + (t % 1000) * 0.0005, 6),
                    "longitude": round(lon0 + (t // 1000) * 0.0005, 6),
                }
            )
        f.write(b",\n".join(orjson.dumps(node) for node in nodes))
        f.write(b'\n], "meters": [\n')
        for m in range(meters):
            t = m // meters_per_transformer
            appliances = [{"name": name, "count": count} for name, count in rng.choice(_HOMES)]
            prosumer = prosumer_every > 0 and m % prosumer_every == prosumer_every - 1
            if prosumer:
                appliances.append({"name": "Solar Panel (production)", "count": rng.randint(3, 8)})
            meter = {
                "meter_id": f"GM{m:07d}",
                "transformer_id": f"gen-t{t:06d}",
                "meter_type": "net-meter" if prosumer else "Smart",
                "er": {
                    "name": f"Home {m}",
                    "type": "prosumer" if prosumer else "consumer",
                    "appliances": appliances,
                },
            }
            if m:
                f.write(b",\n")
            f.write(orjson.dumps(meter))
        f.write(b"\n]}\n")
    return {"meters": meters, "transformers": transformers, "feeders": feeders}


def _meters_of(data: bytes, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file's header (name, description, grid) and its raw meter entries."""
    raw = orjson.loads(data)
    meters = raw.pop("meters", None)
    if not isinstance(meters, list):
        msg = f"world file {path}: meters: a list is required"
        raise ValueError(msg)
    return raw, meters


_APPLIANCE_LIST = TypeAdapter(list[ApplianceCount])


def _with_appliances(raw: Any, validated: dict[bytes, list[ApplianceCount] | None]) -> Any:
    """``raw`` with its ER's appliance list as models, validated once per distinct list.

    Appliance lists repeat (a generated world has a few dozen) and were half of a meter's validation;
    the meter's own validation takes the models as they are. An invalid list is left raw, so that the
    meter's validation reports it where it is."""
    er = raw.get("er") if isinstance(raw, dict) else None
    if not isinstance(er, dict) or not isinstance(er.get("appliances"), list):
        return raw
    key = orjson.dumps(er["appliances"])
    if key not in validated:
        try:
            validated[key] = _APPLIANCE_LIST.validate_python(er["appliances"])
        except ValidationError:
            validated[key] = None
    models = validated[key]
    return raw if models is None else {**raw, "er": {**er, "appliances": models}}


def _needs_ordinary_load(meters: list[dict[str, Any]]) -> bool:
    return len(meters) < BULK_FROM_METERS or any(
        m.get("transformer_id") is None and m.get("parent_id") is None for m in meters
    )


# The layout ``generate_world`` writes: the header and grid, then this, then one meter per line.
_METERS_START = b'\n], "meters": [\n'
_METERS_END = b"\n]}"
# An entry's ER: the key "er" with an object (a quote inside a JSON string is escaped, so this is a key).
_ER_KEY = re.compile(rb'"er"\s*:\s*\{')


class _NotBulk(Exception):
    """The file is not a meter per line after all, or a meter needs the ordinary load."""


def _by_line(data: bytes) -> tuple[dict[str, Any], int, int, Iterator[Any]] | None:
    """A file in ``generate_world``'s layout as (header, meters, ERs at most, the entries one line at a time),
    parsed as they are consumed so that a world of millions never sits in memory as objects; None for
    any other layout. A line that is not one JSON value raises :class:`_NotBulk` when it is reached."""
    start = data.find(_METERS_START)
    end = data.rfind(_METERS_END)
    if start < 0 or end < start or data[end + len(_METERS_END) :].strip():
        return None
    try:
        header = orjson.loads(data[:start] + b"\n]}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(header, dict) or "meters" in header:
        return None
    first = start + len(_METERS_START)
    count = data.count(b",\n", first, end) + 1
    ers = sum(1 for _ in _ER_KEY.finditer(data, first, end))
    view = memoryview(data)

    def entries() -> Iterator[Any]:
        at = first
        while at <= end:
            stop = data.find(b",\n", at, end)
            stop = end if stop < 0 else stop
            try:
                yield orjson.loads(view[at:stop])
            except orjson.JSONDecodeError as exc:
                raise _NotBulk from exc
            at = stop + 2

    return header, count, ers, entries()


async def load_any_world(conn: repository.Conn, path: Path) -> WorldSummary:
    """Load ``path`` in bulk when it is big and every meter names its place, else the ordinary way."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError:
        return await load_world(conn, read_world(path))  # read_world names the file and the problem
    by_line = _by_line(data)
    if by_line is not None and by_line[1] >= BULK_FROM_METERS:
        # Tried in a savepoint: a file that is not one meter per line after all, or whose meter needs the
        # ordinary load, leaves nothing behind (but the ids the attempt reserved: a gap, as any rollback).
        await conn.execute("savepoint world_by_line")
        try:
            summary = await _load_bulk(conn, *by_line)
        except _NotBulk:
            await conn.execute("rollback to savepoint world_by_line")
        else:
            await conn.execute("release savepoint world_by_line")
            return summary
    try:
        header, meters = _meters_of(data, path)
    except orjson.JSONDecodeError:
        header, meters = {}, []  # read_world names the file and the problem
    del data
    if _needs_ordinary_load(meters):
        return await load_world(conn, read_world(path))
    return await load_world_bulk(conn, header, meters)


async def load_world_bulk(
    conn: repository.Conn, header: dict[str, Any], meters: list[dict[str, Any]]
) -> WorldSummary:
    """Create the world inside the caller's transaction: nodes one by one, the rest with ``COPY``."""
    ers = sum(1 for m in meters if isinstance(m, dict) and m.get("er"))
    return await _load_bulk(conn, header, len(meters), ers, iter(meters))


async def _load_bulk(
    conn: repository.Conn, header: dict[str, Any], count: int, max_ers: int, meters: Iterator[Any]
) -> WorldSummary:
    """:func:`load_world_bulk` of ``count`` raw entries with at most ``max_ers`` ERs, consumed once.

    The COPY text is written to temporary files as the entries go by (a few hundred bytes a meter), so
    memory holds one entry at a time and each meter's code, id and transformer.
    """
    world = WorldFile.model_validate({**header, "meters": []})
    await _create_grid_nodes(conn, world.grid)
    known = await repository.catalogue(conn)
    transformers = {
        row["code"]: (row["id"], row["level"])
        for row in await repository.fetch_all(conn, "select id, code, level from grid_nodes")
    }
    taken = {row["code"].lower() for row in await repository.fetch_all(conn, "select code from meters")}
    first_meter = await _reserve(conn, "meters", count)
    first_er = await _reserve(conn, "energy_resources", max_ers)
    # created_at and updated_at are the tables' default, now(): the transaction's time, as in the ordinary
    # load; linked_at is that time too, formatted once (not parsed and printed per row).
    row = await repository.fetch_one(conn, "select now()::text as now")
    assert row is not None
    now = str(row["now"])
    by_code: dict[str, tuple[int, int, bool]] = {}  # lower(code) -> (id, transformer id, linked)
    resolved: dict[bytes, list[str]] = {}  # appliance set -> its DER lines after the er_id
    validated: dict[bytes, list[ApplianceCount] | None] = {}  # appliance list -> its models (None: invalid)
    ers = prosumers = 0
    with _Spool() as er_text, _Spool() as der_text, _Spool() as meter_text:
        for index, raw in enumerate(meters):
            if index % 10_000 == 9_999:
                # Seconds of CPU a million: let the service's bus keep its connection (keepalive) meanwhile.
                await asyncio.sleep(0)
            where = f"meters[{index}] ({raw.get('meter_id') if isinstance(raw, dict) else '?'})"
            try:
                item = WorldMeter.model_validate(_with_appliances(raw, validated))
                code = item.meter_id.lower()
                if code in taken or code in by_code:
                    msg = f"meter_id: a meter with code {item.meter_id!r} already exists"
                    raise ConflictError(msg, field="meter_id")
                parent = None
                if item.parent_id is not None:
                    parent = by_code.get(str(item.parent_id).lower())
                    if parent is None:
                        msg = f"parent_id: no meter {item.parent_id!r} before this one in the file"
                        raise NotFoundError(msg, field="parent_id")
                    if parent[2]:
                        msg = f"parent_id: meter {item.parent_id!r} is linked to an energy resource; it cannot have children"
                        raise ConflictError(msg, field="parent_id")
                if item.transformer_id is not None:
                    found = transformers.get(str(item.transformer_id).lower())
                    if found is None or found[1] != "transformer":
                        msg = f"transformer_id: no transformer {item.transformer_id!r}"
                        raise NotFoundError(msg, field="transformer_id")
                    transformer = found[0]
                    if parent is not None and parent[1] != transformer:
                        msg = "transformer_id: a child meter hangs from its parent's transformer"
                        raise InvalidError(msg, field="transformer_id")
                elif parent is None:
                    raise _NotBulk  # placed by its coordinates: the ordinary load's work
                else:
                    transformer = parent[1]
                meter_id = first_meter + index
                er_id = None
                consumption = item.consumption_factor
                production = item.load_factor_production or 0.0
                if item.er is not None:
                    er = item.er
                    if ers == max_ers:
                        raise _NotBulk  # more ERs than the file's text showed: ids were not reserved
                    er_id = first_er + ers
                    ers += 1
                    # A generated world repeats a few appliance sets: each distinct one is resolved once.
                    key = orjson.dumps([raw["er"].get("appliance_type"), raw["er"].get("appliances")])
                    der_lines = resolved.get(key)
                    if der_lines is None:
                        groups = repository.resolve_appliances(known, er.appliance_type, er.appliances)
                        der_lines = [
                            "\t"
                            + _line(
                                (
                                    g.appliance_id,
                                    g.quantity,
                                    g.switched_on,
                                    g.tilt_deg,
                                    g.azimuth_deg,
                                )
                            )
                            for g in groups
                        ]
                        resolved[key] = der_lines
                    er_text.add(
                        f"{er_id}\t{_escaped(er.name)}\t{er.type}\t{er.kind}\t{er.profile}\t{_opt(er.city)}\t"
                        f"{_opt(er.state)}\t{_num(er.latitude)}\t{_num(er.longitude)}\n"
                    )
                    er_prefix = str(er_id)
                    der_text.add("".join([er_prefix + line for line in der_lines]))
                    if item.link_load_factor_consumption is not None:
                        consumption = item.link_load_factor_consumption
                    production = (
                        item.link_load_factor_production
                        if item.link_load_factor_production is not None
                        else repository.link_production_factor(er.type)
                    )
                    prosumers += er.type == "prosumer"
                meter_text.add(
                    f"{meter_id}\t{_escaped(item.meter_id)}\t{_num(None if parent is None else parent[0])}\t"
                    f"{transformer}\t{_num(er_id)}\t{consumption!r}\t{production!r}\t{item.meter_type}\t"
                    f"{_opt(item.city)}\t{_opt(item.state)}\t{_num(item.latitude)}\t{_num(item.longitude)}\t"
                    f"{_opt(item.pincode)}\t{_num(item.max_capacity_kW)}\t{now if er_id is not None else _NULL}\n"
                )
                by_code[code] = (meter_id, transformer, er_id is not None)
            except _NotBulk:
                raise
            except Exception as exc:
                raise _located(exc, where) from exc
        checks_off = await _foreign_key_checks_off(conn)
        await er_text.copy(
            conn,
            "energy_resources (id, name, type, kind, profile, city, state, latitude, longitude)",
        )
        await der_text.copy(
            conn,
            "ders (er_id, appliance_id, quantity, switched_on, tilt_deg, azimuth_deg)",
        )
        await meter_text.copy(
            conn,
            "meters (id, code, parent_id, transformer_id, er_id, load_factor_consumption, load_factor_production,"
            " meter_type, city, state, latitude, longitude, pincode, max_capacity_kw, linked_at)",
        )
    if checks_off:
        await conn.execute("select set_config('session_replication_role', 'origin', true)")
    # Statistics for the rows just written: without them the planner takes the tables for empty, and the
    # engine's first fleet read joined a million meters to a million ERs by nested loops (62 s at 100k
    # meters on a fresh database). A role that does not own the tables is only warned and skips it.
    await conn.execute("analyze energy_resources, ders, meters")
    return WorldSummary(
        name=world.name,
        grid_nodes=len(world.grid),
        transformers=sum(1 for node in world.grid if node.level == "transformer"),
        meters=count,
        energy_resources=ers,
        prosumers=prosumers,
    )


_NODE_CODE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_PARENT_LEVEL = {"feeder": "utility", "transformer": "feeder"}


async def _create_grid_nodes(conn: repository.Conn, nodes: list[GridNodeCreate]) -> None:
    """The world's grid nodes, a level's worth per ``INSERT`` where that gives what ``create_grid_node``
    would, one by one through it otherwise.

    A generated world of a million meters has ten thousand transformers; through ``create_grid_node``
    that is five statements each (parent, code, insert, read back, and the grid version's trigger).
    A node is batched when every rule ``create_grid_node`` applies is checked here: its code (given or
    made from the name) is valid, new and not reserved, a transformer has its rating, and its parent is
    named by a code already created (in the database or earlier in the file) at the level above. Any
    other node (a parent named by id, a rule broken) goes through ``create_grid_node``, so its error is
    that function's, located as before.
    """
    known = {
        row["code"]: (row["id"], row["level"])
        for row in await repository.fetch_all(conn, "select id, code, level from grid_nodes")
    }
    pending: list[tuple[str, GridNodeCreate, int | None]] = []

    async def flush() -> None:
        if not pending:
            return
        columns = list(zip(*((code, n, parent) for code, n, parent in pending), strict=True))
        codes, bodies, parents = columns
        rows = await repository.fetch_all(
            conn,
            "insert into grid_nodes (code, name, level, parent_id, capacity_kva, city, state, latitude,"
            " longitude, pincode, emergency_service) select * from unnest(%s::text[], %s::text[], %s::text[],"
            " %s::bigint[], %s::float8[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[],"
            " %s::boolean[]) returning id, code, level",
            (
                list(codes),
                [b.name for b in bodies],
                [b.level for b in bodies],
                list(parents),
                [b.capacity_kVA for b in bodies],
                [b.city for b in bodies],
                [b.state for b in bodies],
                [b.latitude for b in bodies],
                [b.longitude for b in bodies],
                [b.pincode for b in bodies],
                [b.emergency_service for b in bodies],
            ),
        )
        known.update({row["code"]: (row["id"], row["level"]) for row in rows})
        pending.clear()

    batched = {code for code, _, _ in pending}
    for index, node in enumerate(nodes):
        code = node.code if node.code is not None else _slug_or_none(node.name)
        parent_ref = node.parent_id
        parent_code = parent_ref.lower() if isinstance(parent_ref, str) and not parent_ref.isdigit() else None
        batchable = (
            code is not None
            and _NODE_CODE.fullmatch(code) is not None
            and not code.startswith("unassigned")
            and code not in known
            and code not in batched
            and (node.level != "transformer" or node.capacity_kVA is not None)
            and (
                (node.level == "utility" and parent_ref is None)
                or (parent_code is not None and (parent_code in known or parent_code in batched))
            )
        )
        if batchable and parent_code is not None and parent_code in batched:
            await flush()  # the parent needs its id first
            batched.clear()
        if batchable and parent_code is not None and known[parent_code][1] != _PARENT_LEVEL.get(node.level):
            batchable = False  # the wrong kind of parent: create_grid_node says so
        if not batchable:
            await flush()
            batched.clear()
            try:
                created = await grid_repository.create_grid_node(conn, node)
            except Exception as exc:
                raise _located(exc, f"grid[{index}] ({node.code or node.name})") from exc
            known[created.code] = (created.id, node.level)
            continue
        assert code is not None
        parent_id = None if parent_code is None else known[parent_code][0]
        pending.append((code, node, parent_id))
        batched.add(code)
    await flush()


def _slug_or_none(name: str) -> str | None:
    try:
        return slug(name)
    except ValueError:
        return None


async def _foreign_key_checks_off(conn: repository.Conn) -> bool:
    """Skip PostgreSQL's per-row foreign-key checks for the COPYs that follow, where the role may.

    Every reference the COPYs write was checked above or made here: ERs and meters take ids reserved in
    this transaction, DERs name catalogue appliances, meters name a transformer and a parent found
    above. PostgreSQL would check them again row by row (a trigger and an index probe each: two per
    DER, two per meter, most of the database's time at a million meters), so with the right
    (``session_replication_role``: a superuser's, as the deployments' ``postgres`` role) those triggers
    are off until the COPYs end, inside this transaction only. The rows referred to are locked as a
    foreign-key check would lock them (``for key share``), so a concurrent delete still waits for the
    commit. Without the right, the checks run as always. Constraints, unique indexes and NOT NULL are
    enforced either way.
    """
    row = await repository.fetch_one(conn, "select current_setting('is_superuser') = 'on' as allowed")
    if row is None or not row["allowed"]:
        return False
    await conn.execute("select 1 from grid_nodes for key share")
    await conn.execute("select 1 from appliances for key share")
    await conn.execute("select set_config('session_replication_role', 'replica', true)")
    return True


async def _reserve(conn: repository.Conn, table: str, n: int) -> int:
    """The first of ``n`` consecutive ids of ``table``, taken from its sequence (as if ``n`` rows had been
    inserted one by one: the next insert gets the id after them)."""
    seq = f"{table}_id_seq"
    row = await repository.fetch_one(
        conn, f"select case when is_called then last_value else last_value - 1 end as used from {seq}"
    )
    assert row is not None
    first = int(row["used"]) + 1
    if n:
        await conn.execute(f"select setval('{seq}', %s)", (first + n - 1,))
    return first


class _Spool:
    """One table's COPY text, written to a temporary file as it is made and sent to COPY in large blocks:
    a few hundred bytes a meter would be gigabytes of memory at millions of meters."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by __exit__
        self._pending: list[str] = []

    def __enter__(self) -> _Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._file.close()

    def add(self, text: str) -> None:
        self._pending.append(text)
        if len(self._pending) >= 10_000:
            self._flush()

    def _flush(self) -> None:
        self._file.write("".join(self._pending).encode())
        self._pending.clear()

    async def copy(self, conn: repository.Conn, target: str) -> None:
        """``COPY target FROM STDIN`` with everything added (nothing when nothing was)."""
        self._flush()
        if not self._file.tell():
            return
        self._file.seek(0)
        async with conn.cursor() as cur, cur.copy(f"copy {target} from stdin") as copy:
            while block := self._file.read(1 << 20):
                await copy.write(block)


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escaped(value: str) -> str:
    # Most strings need no escape: testing for one is cheaper than translating every string.
    if value.isprintable() and "\\" not in value:
        return value
    return value.translate(_ESCAPES)


# A value in COPY's text format by its exact type (one dict lookup rather than isinstance tests: a
# million-meter world encodes tens of millions of values).
_ENCODE: dict[type, Callable[[Any], str]] = {
    type(None): lambda _: "\\N",
    bool: lambda v: "t" if v else "f",
    str: _escaped,
    int: str,
    float: repr,
    datetime: datetime.isoformat,
}


_NULL = "\\N"


def _opt(value: str | None) -> str:
    """An optional string in COPY's text format."""
    return _NULL if value is None else _escaped(value)


def _num(value: float | None) -> str:
    """An optional number (int or float) in COPY's text format."""
    return _NULL if value is None else repr(value)


def _text(value: Any) -> str:
    """A value in COPY's text format (NULL as ``\\N``, backslash escapes in strings)."""
    encode = _ENCODE.get(type(value))
    if encode is not None:
        return encode(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


def _line(row: tuple[Any, ...]) -> str:
    """One row as a COPY text line."""
    return "\t".join([_ENCODE.get(type(v), _text)(v) for v in row]) + "\n"


def _located(exc: Exception, where: str) -> Exception:
    if isinstance(exc, ConflictError | NotFoundError | InvalidError):
        exc.message = f"{where}: {exc.message}"
        exc.args = (exc.message,)
        return exc
    if hasattr(exc, "errors"):  # a pydantic ValidationError
        return ValueError(f"{where}: {exc}")
    return exc
