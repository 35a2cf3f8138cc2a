"""The world as the aggregator needs it: meters, the parent tree, the grid, what is expected to report.

Built from plain rows (pure), loaded by :mod:`gridsim_aggregator.repository`, reloaded when the clock's
``world_version`` changes or a batch names a transformer it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gridsim_aggregator import domain
from gridsim_aggregator.domain import TOTAL_FIELDS, Closure, IntArray, Totals
from gridsim_shared.ids import FeederPath, MeterPath, TransformerPath, UtilityPath, slug

__all__ = ["GridNode", "MeterRow", "NodeRollup", "Topology", "build_topology", "grid_rollups"]

LEVELS = ("transformer", "feeder", "utility")


@dataclass(frozen=True)
class GridNode:
    """A utility, feeder or transformer."""

    id: int
    code: str
    level: str
    parent_id: int | None
    capacity_kva: float | None
    latitude: float | None = None  # where the node is (its ambient temperature); None: unknown
    longitude: float | None = None


@dataclass(frozen=True)
class MeterRow:
    """The columns of ``meters`` the aggregator reads."""

    id: int
    code: str
    parent_id: int | None
    transformer_id: int | None
    status: str
    load_factor_consumption: float
    load_factor_production: float


@dataclass(frozen=True)
class Topology:
    """Meters, parent tree and grid, indexed for closing intervals."""

    nodes: list[GridNode]
    index: dict[int, int]  # node id → position in ``nodes``
    by_code: dict[str, int]  # node code → node id
    parent_index: IntArray  # position of each node's parent, -1 for utilities
    tree: Closure
    meter_code: dict[int, str]
    expected_leaves: frozenset[int]
    expected_per_node: IntArray  # leaves expected to report under each node
    expected_transformers: frozenset[str]  # codes of transformers with a leaf expected to report
    meter_paths: dict[int, MeterPath] = field(default_factory=dict)

    def node_path(self, node: GridNode) -> UtilityPath | FeederPath | TransformerPath:
        """The topic path of a grid node."""
        chain = [node]
        while chain[-1].parent_id is not None:
            chain.append(self.nodes[self.index[chain[-1].parent_id]])
        codes = [n.code for n in reversed(chain)]
        if len(codes) == 1:
            return UtilityPath(*codes)
        if len(codes) == 2:
            return FeederPath(*codes)
        return TransformerPath(*codes[:3])


def _expected(meter: MeterRow) -> bool:
    # meter-sim sends nothing for an OFF meter (K = 0 on both sides) or one that is not online.
    return meter.status == "online" and (
        meter.load_factor_consumption > 0 or meter.load_factor_production > 0
    )


def build_topology(nodes: Sequence[GridNode], meters: Sequence[MeterRow]) -> Topology:
    """Index ``nodes`` and ``meters``."""
    ordered = list(nodes)
    index = {n.id: i for i, n in enumerate(ordered)}
    parent_index = np.array(
        [index.get(n.parent_id, -1) if n.parent_id is not None else -1 for n in ordered], dtype=np.int64
    )
    tree = domain.closure([m.id for m in meters], [m.parent_id for m in meters])
    parents = set(tree.parents.tolist())
    leaves = [m for m in meters if m.id not in parents]
    expected = frozenset(m.id for m in leaves if m.transformer_id is not None and _expected(m))
    per_node = np.zeros(len(ordered), dtype=np.int64)
    for m in leaves:
        if m.id in expected and m.transformer_id in index:
            per_node[index[m.transformer_id]] += 1
    expected_per_node = _roll_up_counts(per_node, parent_index, ordered)
    topo = Topology(
        nodes=ordered,
        index=index,
        by_code={n.code: n.id for n in ordered},
        parent_index=parent_index,
        tree=tree,
        meter_code={m.id: m.code for m in meters},
        expected_leaves=expected,
        expected_per_node=expected_per_node,
        expected_transformers=frozenset(
            n.code
            for n, count in zip(ordered, expected_per_node, strict=True)
            if n.level == "transformer" and count > 0
        ),
    )
    by_id = {m.id: m for m in meters}
    for i, pid in enumerate(tree.parents.tolist()):
        transformer = by_id[pid].transformer_id
        if transformer is None:  # a parent not linked itself hangs where its first linked leaf hangs
            leaf_ids = tree.pair_leaf[tree.pair_parent == i]
            transformer = next(
                (by_id[int(x)].transformer_id for x in leaf_ids if by_id[int(x)].transformer_id), None
            )
        if transformer is None or transformer not in index:
            continue
        path = topo.node_path(ordered[index[transformer]])
        if isinstance(path, TransformerPath):
            topo.meter_paths[pid] = MeterPath(
                path.utility, path.feeder, path.transformer, slug(by_id[pid].code)
            )
    return topo


def _roll_up_counts(per_node: IntArray, parent_index: IntArray, nodes: Sequence[GridNode]) -> IntArray:
    total = per_node.copy()
    for level in LEVELS[:-1]:
        for i, node in enumerate(nodes):
            if node.level == level and parent_index[i] >= 0:
                total[parent_index[i]] += total[i]
    return total


@dataclass(frozen=True)
class NodeRollup:
    """One grid node's aggregate for one interval."""

    node: GridNode
    totals: Totals  # one group
    apparent_kva: float
    loading_pct: float | None
    meters_expected: int
    meters_reporting: int

    @property
    def partial(self) -> bool:
        """Fewer meters reported than were expected to."""
        return self.meters_reporting < self.meters_expected


def grid_rollups(topo: Topology, transformer_totals: dict[int, Totals], interval_s: int) -> list[NodeRollup]:
    """Transformer, feeder and utility aggregates from each transformer's sums (silent ones read zero)."""
    n = len(topo.nodes)
    if transformer_totals:
        positions = np.fromiter((topo.index[node_id] for node_id in transformer_totals), dtype=np.int64)
        totals = _stack(list(transformer_totals.values())).regroup(positions, n)
    else:
        totals = Totals.zeros(n)
    for level in LEVELS[:-1]:
        at_level = np.array([node.level == level for node in topo.nodes], dtype=np.bool_)
        target = np.where(at_level & (topo.parent_index >= 0), topo.parent_index, n)
        moved = _select(totals, at_level).regroup(target, n + 1)
        totals = totals + _take(moved, np.arange(n))
    kva = domain.apparent_kva(totals, interval_s)
    out = []
    for i, node in enumerate(topo.nodes):
        one = _take(totals, np.array([i]))
        loading = 100.0 * float(kva[i]) / node.capacity_kva if node.capacity_kva else None
        out.append(
            NodeRollup(
                node=node,
                totals=one,
                apparent_kva=float(kva[i]),
                loading_pct=loading,
                meters_expected=int(topo.expected_per_node[i]),
                meters_reporting=int(totals.readings[i]),
            )
        )
    return out


def _select(t: Totals, mask: np.ndarray) -> Totals:
    return Totals(*(np.where(mask, getattr(t, f), 0).astype(getattr(t, f).dtype) for f in TOTAL_FIELDS))


def _stack(parts: Sequence[Totals]) -> Totals:
    return Totals(*(np.concatenate([getattr(t, f) for t in parts]) for f in TOTAL_FIELDS))


def _take(t: Totals, rows: IntArray) -> Totals:
    return Totals(*(getattr(t, f)[rows] for f in TOTAL_FIELDS))
