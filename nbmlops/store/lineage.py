"""Lineage graph walks over the store's edge tables, one batched query per level."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import InvalidArgumentError, NotFoundError
from .entities import LineageEdge, LineageGraph, LineageNode
from .models import (
    ArtifactEdgeRow,
    ArtifactRow,
    CellExecutionRow,
    CellSourceRow,
    EstimatorRow,
    RunRow,
    ValidationRow,
    VariableEdgeRow,
)

__all__ = ["LineageWalker"]

_CHUNK = 500


def _chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    items = sorted(set(ids))
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def _first_line(source: str, width: int = 60) -> str:
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line if len(line) <= width else line[: width - 1] + "…"
    return "(empty cell)"


class LineageWalker:
    """Resolves a lineage target and walks the graph around it inside one read session."""

    def __init__(self, session: Session, *, include_code: bool = False) -> None:
        self.s = session
        self._var_filter = () if include_code else (VariableEdgeRow.kind == "data",)
        self.nodes: dict[str, LineageNode] = {}
        self.edges: dict[tuple[str, str, str], LineageEdge] = {}

    # -- resolution -----------------------------------------------------------------------------

    def resolve(self, target: str, run_id: str | None) -> str:
        """Turn a user's target into a root node id (``artifact:N`` / ``cell:N`` / ``var:N:x``)."""
        target = target.strip()
        if not target:
            raise InvalidArgumentError("empty lineage target")
        kind, _, rest = target.partition(":")
        if kind in ("artifact", "cell") and rest.isdigit():
            table = ArtifactRow if kind == "artifact" else CellExecutionRow
            if self.s.get(table, int(rest)) is None:
                raise NotFoundError(f"no {kind} {rest}")
            return target
        # a file path that was read or written
        candidates = {target, os.path.abspath(target), os.path.realpath(target)}
        art_id = self.s.scalar(
            select(ArtifactRow.id)
            .where(ArtifactRow.uri.in_(candidates))
            .order_by(ArtifactRow.id.desc())
            .limit(1)
        )
        if art_id is not None:
            return f"artifact:{art_id}"
        if target.isidentifier():
            if run_id is None:
                raise InvalidArgumentError(
                    f"{target!r} is no recorded file; to follow a variable, name the run"
                )
            rows = self.s.execute(
                select(CellExecutionRow.id, CellExecutionRow.vars_defined)
                .where(CellExecutionRow.run_id == run_id)
                .order_by(CellExecutionRow.seq.desc())
            )
            for cid, defined in rows:
                if target in (defined or []):
                    return f"var:{cid}:{target}"
            raise NotFoundError(f"no cell of run {run_id[:8]} defined a variable {target!r}")
        raise NotFoundError(f"no recorded file, artifact or variable {target!r}")

    # -- nodes ----------------------------------------------------------------------------------

    def _add_edge(self, source: str, target: str, label: str) -> None:
        self.edges.setdefault((source, target, label), LineageEdge(source, target, label))

    def _load_artifacts(self, ids: Iterable[int]) -> None:
        for chunk in _chunks(i for i in ids if f"artifact:{i}" not in self.nodes):
            for a in self.s.scalars(select(ArtifactRow).where(ArtifactRow.id.in_(chunk))):
                self.nodes[f"artifact:{a.id}"] = LineageNode(
                    id=f"artifact:{a.id}",
                    type="artifact",
                    label=os.path.basename(a.uri.rstrip("/")) or a.uri,
                    attrs={
                        "uri": a.uri,
                        "kind": a.kind,
                        "fingerprint": a.fingerprint,
                        "size": a.size,
                        "schema": a.schema,
                    },
                )

    def _load_cells(self, ids: Iterable[int]) -> None:
        todo = [i for i in set(ids) if f"cell:{i}" not in self.nodes]
        for chunk in _chunks(todo):
            rows = self.s.execute(
                select(CellExecutionRow, CellSourceRow.source, RunRow.name)
                .join(CellSourceRow, CellExecutionRow.source_hash == CellSourceRow.hash)
                .join(RunRow, CellExecutionRow.run_id == RunRow.id)
                .where(CellExecutionRow.id.in_(chunk))
            )
            for c, source, run_name in rows:
                self.nodes[f"cell:{c.id}"] = LineageNode(
                    id=f"cell:{c.id}",
                    type="cell",
                    label=f"{run_name} [{c.execution_count if c.execution_count is not None else c.seq}] "
                    f"{_first_line(source)}",
                    attrs={
                        "run_id": c.run_id,
                        "run_name": run_name,
                        "seq": c.seq,
                        "cell_id": c.cell_id,
                        "execution_count": c.execution_count,
                        "status": c.status,
                        "source": source,
                        "duration": c.duration,
                    },
                )
            for e in self.s.scalars(select(EstimatorRow).where(EstimatorRow.cell_execution_id.in_(chunk))):
                nid = f"estimator:{e.id}"
                self.nodes[nid] = LineageNode(
                    id=nid,
                    type="estimator",
                    label=f"{e.class_name} ({e.variable})",
                    attrs={"variable": e.variable, "class_name": e.class_name, "params": e.params,
                           "fitted_on": e.fitted_on},
                )
                self._add_edge(f"cell:{e.cell_execution_id}", nid, "fitted")

    # -- walking --------------------------------------------------------------------------------

    def _validated_against(self, arts: set[int]) -> None:
        """Edges reference -> data, ``validated against`` (``(failed)`` when the newest such
        validation failed), for every artifact in the graph that was validated: lineage shows
        what a dataset was checked against. The references are not walked further."""
        latest: dict[tuple[int, int], bool] = {}
        for chunk in _chunks(arts):
            for data_id, ref_id, schema_id, passed in self.s.execute(
                select(ValidationRow.dataset_artifact_id, ValidationRow.reference_artifact_id,
                       ValidationRow.schema_artifact_id, ValidationRow.passed)
                .where(ValidationRow.dataset_artifact_id.in_(chunk))
                .order_by(ValidationRow.id)
            ):
                ref = ref_id if ref_id is not None else schema_id
                if ref is not None and data_id is not None:
                    latest[(ref, data_id)] = bool(passed)
        for (ref, data_id), passed in latest.items():
            self._add_edge(f"artifact:{ref}", f"artifact:{data_id}", _validations_label(passed))

    def walk(self, root: str, *, direction: str, max_depth: int) -> LineageGraph:
        cells: set[int] = set()
        arts: set[int] = set()
        if root.startswith("var:"):
            _, cid_s, name = root.split(":", 2)
            cells.add(int(cid_s))
            self.nodes[root] = LineageNode(id=root, type="variable", label=name, attrs={})
            self._add_edge(f"cell:{cid_s}", root, "defined")
            if direction == "downstream":
                # what came of the variable: the cells that used it from its defining cell
                rows = self.s.execute(
                    select(VariableEdgeRow.dst_cell_execution_id).where(
                        VariableEdgeRow.src_cell_execution_id == int(cid_s),
                        VariableEdgeRow.variable == name,
                    )
                )
                cells = {r[0] for r in rows}
                for c in cells:
                    self._add_edge(root, f"cell:{c}", "used")
                self._load_cells([int(cid_s)])
        else:
            kind, _, num = root.partition(":")
            (arts if kind == "artifact" else cells).add(int(num))
        seen_cells: set[int] = set()
        seen_arts: set[int] = set()
        up = direction in ("upstream", "both")
        down = direction in ("downstream", "both")
        depth = 0
        while (cells or arts) and depth <= max_depth:
            self._load_cells(cells)
            self._load_artifacts(arts)
            seen_cells |= cells
            seen_arts |= arts
            next_cells: set[int] = set()
            next_arts: set[int] = set()
            for chunk in _chunks(arts):
                if up:
                    for cid, aid in self.s.execute(
                        select(ArtifactEdgeRow.cell_execution_id, ArtifactEdgeRow.artifact_id).where(
                            ArtifactEdgeRow.artifact_id.in_(chunk),
                            ArtifactEdgeRow.direction == "wrote",
                            ArtifactEdgeRow.cell_execution_id.is_not(None),
                        )
                    ):
                        assert cid is not None
                        self._add_edge(f"cell:{cid}", f"artifact:{aid}", "wrote")
                        next_cells.add(cid)
                if down:
                    for cid, aid in self.s.execute(
                        select(ArtifactEdgeRow.cell_execution_id, ArtifactEdgeRow.artifact_id).where(
                            ArtifactEdgeRow.artifact_id.in_(chunk),
                            ArtifactEdgeRow.direction == "read",
                            ArtifactEdgeRow.cell_execution_id.is_not(None),
                        )
                    ):
                        assert cid is not None
                        self._add_edge(f"artifact:{aid}", f"cell:{cid}", "read")
                        next_cells.add(cid)
            for chunk in _chunks(cells):
                if up:
                    for cid, aid in self.s.execute(
                        select(ArtifactEdgeRow.cell_execution_id, ArtifactEdgeRow.artifact_id).where(
                            ArtifactEdgeRow.cell_execution_id.in_(chunk),
                            ArtifactEdgeRow.direction == "read",
                        )
                    ):
                        self._add_edge(f"artifact:{aid}", f"cell:{cid}", "read")
                        next_arts.add(aid)
                    for src, dst, var in self.s.execute(
                        select(
                            VariableEdgeRow.src_cell_execution_id,
                            VariableEdgeRow.dst_cell_execution_id,
                            VariableEdgeRow.variable,
                        ).where(VariableEdgeRow.dst_cell_execution_id.in_(chunk), *self._var_filter)
                    ):
                        self._add_edge(f"cell:{src}", f"cell:{dst}", var)
                        next_cells.add(src)
                if down:
                    for cid, aid in self.s.execute(
                        select(ArtifactEdgeRow.cell_execution_id, ArtifactEdgeRow.artifact_id).where(
                            ArtifactEdgeRow.cell_execution_id.in_(chunk),
                            ArtifactEdgeRow.direction == "wrote",
                        )
                    ):
                        self._add_edge(f"cell:{cid}", f"artifact:{aid}", "wrote")
                        next_arts.add(aid)
                    for src, dst, var in self.s.execute(
                        select(
                            VariableEdgeRow.src_cell_execution_id,
                            VariableEdgeRow.dst_cell_execution_id,
                            VariableEdgeRow.variable,
                        ).where(VariableEdgeRow.src_cell_execution_id.in_(chunk), *self._var_filter)
                    ):
                        self._add_edge(f"cell:{src}", f"cell:{dst}", var)
                        next_cells.add(dst)
            cells = next_cells - seen_cells
            arts = next_arts - seen_arts
            depth += 1
        self._validated_against(seen_arts)
        # nodes referenced by edges but beyond max_depth
        self._load_cells(int(n.split(":")[1]) for e in self.edges.values() for n in (e.source, e.target)
                         if n.startswith("cell:"))
        self._load_artifacts(int(n.split(":")[1]) for e in self.edges.values()
                             for n in (e.source, e.target) if n.startswith("artifact:"))
        nodes: list[LineageNode] = sorted(self.nodes.values(), key=_node_order)
        return LineageGraph(root=root, nodes=nodes, edges=list(self.edges.values()))


def _validations_label(passed: bool) -> str:
    return "validated against" + ("" if passed else " (failed)")


def _node_order(n: LineageNode) -> tuple[Any, ...]:
    kind, _, rest = n.id.partition(":")
    num = rest.split(":")[0]
    return (kind, int(num) if num.isdigit() else 0, rest)
