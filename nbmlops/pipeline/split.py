"""One notebook whose cells carry tags -> a :class:`~nbmlops.pipeline.spec.Pipeline`.

Tags (cell ``metadata.tags``):

``step:NAME``
    starts step ``NAME`` (``^[A-Za-z_][A-Za-z0-9_-]*$``); untagged cells that follow belong to
    it, markdown included.
``after:NAME`` (several tags, or ``after:NAME,NAME``)
    on any cell of a step: the step depends on those steps. nbformat's schema allows no commas
    in tags (JupyterLab splits them), so one ``after:`` tag per dependency is the portable form.
``imports`` / ``functions``
    the cell is copied into every step, before the step's own cells, in notebook order.
``parameters``
    the papermill parameters cell, copied into every step as its parameters cell.
``skip``
    the cell is dropped (with its tags).

Raw cells are dropped, and so are markdown cells before the first step. A code cell before the
first step must carry one of ``imports``, ``functions``, ``parameters`` or ``skip``.

Variables flow between steps: a name a step uses before binding it (static analysis with
:func:`~nbmlops.capture.analysis.analyze_cell`, not defined by the imports/functions/parameters
cells, not one of IPython's) is loaded from the step that defines it among the steps it comes
after (the latest one in topological order), which saves it at its end
(:mod:`nbmlops.pipeline.varsio`). A step that only changes such a variable in place
(``model.fit(...)``, ``df["x"] = ...``) counts as defining it too. A builtin name is passed only
when an earlier step rebinds it; a name no step defines is left alone (a NameError at run time).
A name defined only by steps the user does not come after is an error suggesting the
``after:`` tag to add.

Each step gets a generated notebook (:attr:`Step.notebook_node`)::

    [parameters]  <original parameters cell>            id: original (or nbmlops-parameters)
                  nbmlops_inputs = {}
                  nbmlops_output_dir = None
    <imports and functions cells>                       id: original
    [if variables_in]  from nbmlops.pipeline.varsio import load_variable      id: nbmlops-load
                       NAME = load_variable(nbmlops_inputs["NAME"])  ...
    <the step's own cells>                              id: original
    [if variables_out] from nbmlops.pipeline.varsio import save_variable      id: nbmlops-save
                       save_variable(NAME, nbmlops_output_dir, "NAME")  ...

The same source notebook always produces byte-identical step notebooks (``nbformat.writes``):
outputs, execution counts and cell metadata other than tags are left out, so re-running the
source notebook does not change a step's cache key.

Errors are :class:`~nbmlops.errors.PipelineError` with a one-line message naming the notebook
and the 0-based cell index: ``train.ipynb: cell 7: after:prep names no step (steps: prepare,
train)``.
"""

from __future__ import annotations

import builtins
import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ..capture.analysis import analyze_cell
from ..errors import PipelineError
from .spec import INJECTED_PARAMETERS, Pipeline, Step

__all__ = ["load_tagged_notebook", "split_notebook", "STEP_NAME_RE"]

STEP_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

_ROLE_TAGS = ("imports", "functions", "parameters", "skip")
#: names a step never needs from another step: IPython's namespace
_IPYTHON_NAMES = frozenset(
    {"In", "Out", "get_ipython", "display", "exit", "quit", "_ih", "_oh", "_dh", "_i", "_ii",
     "_iii"}
)
_IPYTHON_NAME_RE = re.compile(r"^(_+|_i+|_i?\d+|__\w*__)$")
_RUNNER_NAMES = frozenset(INJECTED_PARAMETERS)
LOAD_CELL_ID = "nbmlops-load"
SAVE_CELL_ID = "nbmlops-save"
PARAMETERS_CELL_ID = "nbmlops-parameters"


def _ipython_name(name: str) -> bool:
    return name in _IPYTHON_NAMES or bool(_IPYTHON_NAME_RE.match(name))


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


@dataclass
class _Draft:
    name: str
    start: int
    #: (step name, cell index of the after: tag)
    after: list[tuple[str, int]] = field(default_factory=list)
    #: (cell index, cell) of the step's own cells, markdown included
    cells: list[tuple[int, Any]] = field(default_factory=list)


@dataclass
class _Analysis:
    #: name -> cell index of its first use before the step binds it
    needs: dict[str, int] = field(default_factory=dict)
    #: names bound at the end of the step
    stored: set[str] = field(default_factory=set)
    #: names changed in place somewhere in the step
    mutated: set[str] = field(default_factory=set)
    #: names deleted and not bound again by the end of the step
    gone: set[str] = field(default_factory=set)


class _Splitter:
    def __init__(self, path: Path, label: str, nb: Any) -> None:
        self.path = path
        self.label = label
        self.nb = nb
        self.drafts: dict[str, _Draft] = {}
        #: cells copied into every step: (index, cell), notebook order
        self.shared: list[tuple[int, Any]] = []
        self.parameters: tuple[int, Any] | None = None
        self._transformer: Any = None

    def fail(self, message: str, cell: int | None = None) -> PipelineError:
        where = f"{self.label}: cell {cell}: " if cell is not None else f"{self.label}: "
        return PipelineError(_one_line(where + message))

    # -- tags -----------------------------------------------------------------------------------

    def parse(self) -> None:
        cells = [(i, c) for i, c in enumerate(self.nb.cells) if c.get("cell_type") != "raw"]
        if not any(t.startswith("step:") for _, c in cells for t in _tags(c)):
            raise self.fail(
                "no step:NAME tags; tag the first cell of each step with step:NAME "
                "(and later steps with after:NAME)"
            )
        current: _Draft | None = None
        for i, cell in cells:
            tags = _tags(cell)
            steps = [t[len("step:"):].strip() for t in tags if t.startswith("step:")]
            after = [
                n.strip() for t in tags if t.startswith("after:")
                for n in t[len("after:"):].split(",")
            ]
            roles = sorted({t for t in tags if t in _ROLE_TAGS})
            if "skip" in roles:
                if steps or len(roles) > 1:
                    others = [f"step:{s}" for s in steps] + [r for r in roles if r != "skip"]
                    raise self.fail(f"a skip cell cannot also be {', '.join(others)}", i)
                continue
            if len(steps) > 1:
                raise self.fail(
                    f"more than one step tag ({', '.join('step:' + s for s in steps)})", i
                )
            if steps and roles:
                raise self.fail(
                    f"step:{steps[0]} cannot share a cell with the {roles[0]!r} tag; "
                    "put them in separate cells", i,
                )
            if "parameters" in roles and len(roles) > 1:
                extra = " or ".join(r for r in roles if r != "parameters")
                raise self.fail(f"the parameters cell cannot also be tagged {extra}", i)
            if roles and after:
                raise self.fail(
                    f"after: tags belong on a step's cells, not on a {roles[0]} cell", i
                )
            if any(not n for n in after):
                raise self.fail("after: needs step names (after:NAME or after:NAME,NAME)", i)

            if roles == ["parameters"]:
                if cell.cell_type != "code":
                    raise self.fail("the parameters tag belongs on a code cell", i)
                if self.parameters is not None:
                    raise self.fail(
                        f"second parameters cell (the first is cell {self.parameters[0]})", i
                    )
                self.parameters = (i, cell)
                continue
            if roles:  # imports / functions
                self.shared.append((i, cell))
                continue
            if steps:
                name = steps[0]
                if not STEP_NAME_RE.match(name):
                    raise self.fail(
                        f"invalid step name {name!r} in step:{name} (letters, digits, _ and -; "
                        "not starting with a digit or -)", i,
                    )
                if name in self.drafts:
                    raise self.fail(
                        f"duplicate step {name!r} (first started at cell "
                        f"{self.drafts[name].start})", i,
                    )
                current = self.drafts[name] = _Draft(name, i)
            if current is None:
                if after:
                    raise self.fail(
                        f"after:{','.join(after)} on a cell before the first step:NAME tag", i
                    )
                if cell.cell_type == "code" and cell.source.strip():
                    raise self.fail(
                        "code cell before the first step:NAME tag; tag it imports, functions, "
                        "parameters or skip, or start a step there with step:NAME", i,
                    )
                continue  # markdown (or an empty cell) before the first step
            current.after.extend((n, i) for n in after)
            if cell.cell_type == "code" and not cell.source.strip() and not steps:
                continue  # empty code cells do nothing
            current.cells.append((i, cell))

        names = list(self.drafts)
        for draft in self.drafts.values():
            for dep, i in draft.after:
                if dep == draft.name:
                    raise self.fail(f"step {dep!r} cannot come after itself (after:{dep})", i)
                if dep not in self.drafts:
                    raise self.fail(
                        f"after:{dep} names no step (steps: {', '.join(names)})", i
                    )

    # -- variables ------------------------------------------------------------------------------

    def transform(self, source: str) -> str:
        """The cell source as IPython runs it (magics become calls), so that it parses."""
        if self._transformer is None:
            from IPython.core.inputtransformer2 import TransformerManager

            self._transformer = TransformerManager()
        try:
            return str(self._transformer.transform_cell(source))
        except Exception:  # noqa: BLE001 - analysis then sees the raw source (or nothing)
            return source

    def analyze(self, draft: _Draft, shared_names: set[str]) -> _Analysis:
        a = _Analysis()
        bound: set[str] = set()
        for i, cell in draft.cells:
            if cell.cell_type != "code":
                continue
            r = analyze_cell(self.transform(cell.source))
            for name in sorted(r.used):
                if name in bound or name in shared_names or _ipython_name(name):
                    continue
                a.needs.setdefault(name, i)
            bound |= r.stored
            bound -= r.deleted
            a.gone = (a.gone - r.stored) | r.deleted
            a.mutated |= r.mutated
        a.stored = bound
        a.mutated -= shared_names | a.gone
        return a

    def shared_names(self) -> set[str]:
        names = set(_RUNNER_NAMES)
        cells = list(self.shared)
        if self.parameters is not None:
            cells.append(self.parameters)
        for _, cell in cells:
            if cell.cell_type == "code":
                r = analyze_cell(self.transform(cell.source))
                names |= r.stored
        return names

    def resolve(self, steps: dict[str, Step]) -> None:
        shared = self.shared_names()
        analyses = {name: self.analyze(d, shared) for name, d in self.drafts.items()}
        order = _topological_order(steps)
        position = {name: k for k, name in enumerate(order)}
        ancestors = _ancestors(steps)
        produced: dict[str, set[str]] = {}
        for name in order:
            step, a = steps[name], analyses[name]
            for var, cell in a.needs.items():
                candidates = [
                    t for t in ancestors[name]
                    if var in produced.get(t, analyses[t].stored)
                ]
                if candidates:
                    source = max(candidates, key=position.__getitem__)
                    step.variables_in[var] = source
                    if var not in steps[source].variables_out:
                        steps[source].variables_out.append(var)
                    continue
                if hasattr(builtins, var):
                    continue  # the builtin, unless an earlier step shadows it (handled above)
                elsewhere = sorted(
                    (t for t in steps if t != name and var in analyses[t].stored),
                    key=position.__getitem__,
                )
                if elsewhere:
                    where = (
                        f"step {elsewhere[0]!r}" if len(elsewhere) == 1
                        else "steps " + ", ".join(repr(t) for t in elsewhere)
                    )
                    later = [t for t in elsewhere if name in ancestors[t]]
                    if len(later) == len(elsewhere):
                        raise self.fail(
                            f"step {name!r} uses {var!r}, defined only in {where} that "
                            f"run{'s' if len(later) == 1 else ''} after it; define {var!r} in "
                            f"step {name!r} or in a step it comes after", cell,
                        )
                    suggest = [t for t in elsewhere if t not in later][-1]
                    raise self.fail(
                        f"step {name!r} uses {var!r} defined in {where}; "
                        f"add after:{suggest} to step {name!r}", cell,
                    )
                # defined nowhere: a %magic's doing, or a NameError at run time
            produced[name] = (a.stored | (a.mutated & set(step.variables_in))) - a.gone
        for step in steps.values():
            step.variables_in = dict(sorted(step.variables_in.items()))
            step.variables_out = sorted(step.variables_out)

    # -- generated notebooks --------------------------------------------------------------------

    def build(self, pipeline: Pipeline) -> None:
        for name, step in pipeline.steps.items():
            step.notebook_node = self.step_notebook(pipeline, step, self.drafts[name])

    def step_notebook(self, pipeline: Pipeline, step: Step, draft: _Draft) -> Any:
        # copied cells keep their source ids (deduplicated, should the source repeat one);
        # generated cells take fixed ids that none of those uses
        copied = sorted(
            [*self.shared, *draft.cells, *([self.parameters] if self.parameters else [])],
            key=lambda ic: ic[0],
        )
        ids: dict[int, str] = {}
        taken: set[str] = set()

        def unique(preferred: str) -> str:
            cid, k = preferred, 1
            while cid in taken:
                k += 1
                cid = f"{preferred}-{k}"
            taken.add(cid)
            return cid

        for i, cell in copied:
            ids[i] = unique(_source_id(cell, i))
        v4 = nbformat.v4
        cells: list[Any] = []

        param_lines = "nbmlops_inputs = {}\nnbmlops_output_dir = None"

        def copy_cell(i: int, cell: Any) -> Any:
            tags = _schema_tags(cell)
            # where the cell is in the notebook the user wrote: errors are reported there
            metadata: dict[str, Any] = {"nbmlops": {"source_index": i}}
            if tags:
                metadata["tags"] = tags
            if cell.cell_type == "markdown":
                md = v4.new_markdown_cell(source=cell.source, metadata=metadata, id=ids[i])
                if cell.get("attachments"):
                    md["attachments"] = copy.deepcopy(cell["attachments"])
                return md
            return v4.new_code_cell(source=cell.source, metadata=metadata, id=ids[i])

        if self.parameters is None:
            cells.append(v4.new_code_cell(
                source=param_lines, metadata={"tags": ["parameters"]},
                id=unique(PARAMETERS_CELL_ID),
            ))
        # the parameters cell and the imports/functions cells keep their order in the source
        # notebook: a parameters cell may use an import (`workers = os.cpu_count()`)
        header = sorted([*self.shared, *([self.parameters] if self.parameters else [])],
                        key=lambda ic: ic[0])
        for i, cell in header:
            if self.parameters is not None and i == self.parameters[0]:
                source = cell.source.rstrip()
                cells.append(v4.new_code_cell(
                    source=f"{source}\n{param_lines}" if source else param_lines,
                    metadata={"tags": _schema_tags(cell), "nbmlops": {"source_index": i}},
                    id=ids[i],
                ))
            else:
                cells.append(copy_cell(i, cell))
        if step.variables_in:
            lines = ["from nbmlops.pipeline.varsio import load_variable", ""]
            lines += [f'{v} = load_variable(nbmlops_inputs["{v}"])' for v in step.variables_in]
            cells.append(v4.new_code_cell(
                source="\n".join(lines), metadata={"tags": ["nbmlops-load"]},
                id=unique(LOAD_CELL_ID),
            ))
        cells.extend(copy_cell(i, c) for i, c in draft.cells)
        if step.variables_out:
            lines = ["from nbmlops.pipeline.varsio import save_variable", ""]
            lines += [f'save_variable({v}, nbmlops_output_dir, "{v}")' for v in step.variables_out]
            cells.append(v4.new_code_cell(
                source="\n".join(lines), metadata={"tags": ["nbmlops-save"]},
                id=unique(SAVE_CELL_ID),
            ))

        metadata: dict[str, Any] = {
            key: copy.deepcopy(self.nb.metadata[key])
            for key in ("kernelspec", "language_info") if key in self.nb.metadata
        }
        metadata["nbmlops"] = {
            "pipeline": pipeline.name,
            "step": step.name,
            # relative to Pipeline.root, so that moving the project keeps cache keys stable
            "source_notebook": self.path.name,
        }
        nb = v4.new_notebook(cells=cells, metadata=metadata)
        return nbformat.from_dict(nb)


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    if not isinstance(tags, list):
        return []
    return [t.strip() for t in tags if isinstance(t, str) and t.strip()]


def _schema_tags(cell: Any) -> list[str]:
    """The cell's tags as nbformat allows them (no commas): ``after:a,b`` -> ``after:a``,
    ``after:b``; other comma tags are dropped from the generated notebook."""
    out: list[str] = []
    for tag in _tags(cell):
        if "," not in tag:
            out.append(tag)
        elif tag.startswith("after:"):
            out.extend(f"after:{n.strip()}" for n in tag[len("after:"):].split(",") if n.strip())
    return list(dict.fromkeys(out))


def _source_id(cell: Any, index: int) -> str:
    cid = cell.get("id")
    return cid if isinstance(cid, str) and cid else f"cell-{index}"


def _topological_order(steps: dict[str, Step]) -> list[str]:
    """Dependencies first, ties in definition order. A cycle is not reported here (the
    caller's :meth:`Pipeline.topological_order` names it): its steps follow in definition
    order."""
    done: list[str] = []
    placed: set[str] = set()
    pending = list(steps)
    while pending:
        ready = next(
            (n for n in pending if all(d in placed for d in steps[n].depends_on)), None
        )
        if ready is None:
            done.extend(pending)
            break
        pending.remove(ready)
        placed.add(ready)
        done.append(ready)
    return done


def _ancestors(steps: dict[str, Step]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for name in steps:
        seen: set[str] = set()
        stack = list(steps[name].depends_on)
        while stack:
            dep = stack.pop()
            if dep in seen or dep not in steps:
                continue
            seen.add(dep)
            stack.extend(steps[dep].depends_on)
        seen.discard(name)
        result[name] = seen
    return result


def _read(path: Path, label: str) -> Any:
    try:
        return nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise PipelineError(f"{label}: no such notebook") from None
    except Exception as exc:  # noqa: BLE001 - JSON, schema, OS errors: one line, named file
        raise PipelineError(_one_line(f"{label}: cannot read notebook: {exc}")) from exc


def split_notebook(nb: Any, path: str | os.PathLike[str]) -> Pipeline:
    """Split an already read notebook (``nbformat`` v4 node) that lives at ``path``."""
    label = os.fspath(path)
    abspath = Path(os.path.abspath(label))
    splitter = _Splitter(abspath, label, nb)
    splitter.parse()

    meta = nb.get("metadata", {}).get("nbmlops", {})
    pname = meta.get("pipeline") if isinstance(meta, dict) else None
    pipeline = Pipeline(
        name=pname if isinstance(pname, str) and pname.strip() else abspath.stem,
        path=abspath,
        root=abspath.parent,
    )
    for name, draft in splitter.drafts.items():
        depends_on = list(dict.fromkeys(dep for dep, _ in draft.after))
        pipeline.steps[name] = Step(name=name, notebook=abspath, depends_on=depends_on)
    splitter.resolve(pipeline.steps)
    splitter.build(pipeline)
    return pipeline


def load_tagged_notebook(path: str | os.PathLike[str]) -> Pipeline:
    """Read a notebook whose cells carry ``step:``/``after:`` tags and return its pipeline:
    one :class:`Step` per ``step:NAME`` tag, in notebook order, each with its generated
    :attr:`Step.notebook_node`. Cycles among ``after:`` tags are left for
    :meth:`Pipeline.topological_order` to report."""
    label = os.fspath(path)
    nb = _read(Path(label), label)
    return split_notebook(nb, label)
