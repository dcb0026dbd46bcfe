"""Pipeline definitions: the data model every pipeline face shares, and ``pipeline.yaml`` loading.

A :class:`Pipeline` is a named DAG of :class:`Step` objects; each step runs one notebook through
papermill with the nbmlops engine. Two forms produce the same model:

* ``pipeline.yaml`` (:func:`load_pipeline_yaml`), validated against :data:`PIPELINE_SCHEMA`
  (JSON Schema) with the line and column of the offending node in every error;
* one notebook whose cells carry ``step:NAME`` / ``after:NAME`` tags
  (:func:`nbmlops.pipeline.split.load_tagged_notebook`).

:func:`nbmlops.pipeline.load.load_pipeline` picks the form from the file name.

Every :class:`PipelineError` raised while loading is one line,
``FILE:LINE:COLUMN: WHERE: WHAT`` (``WHERE`` is the dotted path of the offending node, e.g.
``steps.train.retries``; it is left out for the top level). See ``docs/pipeline-yaml.md``.

PyYAML and jsonschema are imported by the functions that need them, so importing this module
stays cheap.
"""

from __future__ import annotations

import datetime
import difflib
import heapq
import keyword
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PipelineError  # an InvalidArgumentError: CLI exit code 2

if TYPE_CHECKING:
    import jsonschema
    import yaml

__all__ = [
    "Step",
    "StepValidation",
    "StepGate",
    "Pipeline",
    "PipelineError",
    "load_pipeline_yaml",
    "validate_pipeline_yaml",
    "parse_duration",
    "PIPELINE_SCHEMA",
]


#: parameters the runner injects into generated step notebooks (the tagged-notebook form):
#: where to load the variables a step uses, and where to save those later steps use
INJECTED_PARAMETERS = ("nbmlops_inputs", "nbmlops_output_dir")


@dataclass
class StepValidation:
    """One ``validate:`` entry of a step: check ``path`` against ``against`` (paths relative to
    :attr:`Pipeline.root`; ``against`` may be ``artifact:ID``). A path among the step's
    ``outputs`` is checked after the step ran (or was cached), any other path before it
    starts."""

    path: str
    against: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    #: ``fail``: violations fail the step; ``warn``: they are recorded and the step goes on
    on_fail: str = "fail"
    strict_columns: bool = False
    #: ``before`` (an input) or ``after`` (an output)
    when: str = "before"
    #: ``FILE:LINE:COL`` of the entry
    location: str | None = None


@dataclass
class StepGate:
    """A step's ``gate:``: after the step ran, register ``model`` (a file it wrote) as a version
    of ``name`` and promote it to ``rule["alias"]`` only if it beats the holder of
    ``rule["must_beat"]`` on the held-out ``data`` (:func:`nbmlops.registry.gate.gate`)."""

    model: str
    name: str
    data: str
    target: str
    #: metric, min, max, must_beat, by, alias (:func:`nbmlops.registry.gate.parse_rule`)
    rule: dict[str, Any] = field(default_factory=dict)
    #: ``pass``: a rejected candidate is a normal outcome; ``fail``: it fails the step
    on_reject: str = "pass"
    #: ``FILE:LINE:COL`` of the block
    location: str | None = None


@dataclass
class Step:
    """One node of the DAG: a notebook run headless with parameters."""

    name: str
    #: absolute path of the notebook this step executes
    notebook: Path
    #: parameters given to this step (pipeline-level params are merged in by the runner)
    params: dict[str, Any] = field(default_factory=dict)
    #: names of steps that must finish first
    depends_on: list[str] = field(default_factory=list)
    #: files (paths or globs, relative to :attr:`Pipeline.root`) the step reads; their
    #: content fingerprints enter the cache key
    inputs: list[str] = field(default_factory=list)
    #: files (paths or globs, relative to :attr:`Pipeline.root`) the step writes
    outputs: list[str] = field(default_factory=list)
    #: extra attempts after a failure (0 = run once)
    retries: int = 0
    #: seconds the whole step may take (None = no limit)
    timeout: float | None = None
    #: skip the step when an identical earlier run exists
    cache: bool = True
    #: data validations of inputs (before the step starts) and outputs (after it ran)
    validations: list[StepValidation] = field(default_factory=list)
    #: register + promotion gate of a model the step wrote (after it ran)
    gate: StepGate | None = None
    #: tagged-notebook form only: variable name -> the step that defines it (loaded before the
    #: step's cells run)
    variables_in: dict[str, str] = field(default_factory=dict)
    #: tagged-notebook form only: variables this step saves for later steps
    variables_out: list[str] = field(default_factory=list)
    #: tagged-notebook form only: the generated step notebook (an ``nbformat`` NotebookNode),
    #: executed instead of reading :attr:`notebook`; its content is deterministic so that the
    #: cache key of an unchanged step is stable
    notebook_node: Any = None


@dataclass
class Pipeline:
    """A named DAG of steps, in definition order."""

    name: str
    #: the definition file (pipeline.yaml or the tagged notebook)
    path: Path
    #: directory that relative paths (notebooks, inputs, outputs) are resolved against, and
    #: the working directory of every step's kernel
    root: Path
    params: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, Step] = field(default_factory=dict)
    #: ``pipeline.yaml`` only: ``"FILE:LINE:COL"`` of nodes that later checks may blame
    #: (``steps.NAME``, ``steps.NAME.params.KEY``, ``params.KEY``)
    locations: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def locate(self, *candidates: str) -> str | None:
        """The ``FILE:LINE:COL`` of the first of ``candidates`` the definition knows."""
        return next((self.locations[c] for c in candidates if c in self.locations), None)

    # -- graph queries ---------------------------------------------------------------------

    def topological_order(self) -> list[str]:
        """Step names so that every step comes after the steps it depends on; ties keep
        definition order. Raises :class:`PipelineError` naming the cycle
        (``cycle: a -> b -> a``) or an unknown dependency.

        In a cycle message an arrow points from a step to a step that waits for it (the
        direction the graph is drawn in): ``a -> b`` means ``b`` depends on ``a``."""
        self._check_dependencies()
        names = list(self.steps)
        index = {n: i for i, n in enumerate(names)}
        dependents = self._dependents()
        waiting = {n: len(_unique(s.depends_on)) for n, s in self.steps.items()}
        ready = [index[n] for n, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            name = names[heapq.heappop(ready)]
            order.append(name)
            for dependent in dependents[name]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    heapq.heappush(ready, index[dependent])
        if len(order) < len(names):
            cycle = self._cycle(set(names) - set(order))
            raise PipelineError(f"pipeline {self.name!r}: {_cycle_text(cycle)}")
        return order

    def find_cycle(self) -> list[str] | None:
        """One dependency cycle as ``[a, b, ..., a]`` (``b`` depends on ``a``...), starting at
        its earliest-defined step; None if the graph is acyclic. Unknown dependencies are
        ignored here."""
        names = list(self.steps)
        dependents = self._dependents()
        waiting = {n: sum(1 for d in _unique(s.depends_on) if d in self.steps)
                   for n, s in self.steps.items()}
        queue = [n for n in names if waiting[n] == 0]
        done: set[str] = set()
        while queue:
            name = queue.pop()
            done.add(name)
            for dependent in dependents[name]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    queue.append(dependent)
        remaining = set(names) - done
        return self._cycle(remaining) if remaining else None

    def downstream(self, name: str) -> set[str]:
        """Every step that (transitively) depends on ``name``."""
        self._require(name)
        return _reach(name, self._dependents())

    def upstream(self, name: str) -> set[str]:
        """Every step that ``name`` (transitively) depends on."""
        self._require(name)
        deps = {n: [d for d in _unique(s.depends_on) if d in self.steps]
                for n, s in self.steps.items()}
        return _reach(name, deps)

    def levels(self) -> list[list[str]]:
        """Steps grouped by depth: level 0 holds the steps without dependencies, level *k* the
        steps whose longest chain of dependencies has *k* steps. Each level keeps definition
        order. Raises :class:`PipelineError` like :meth:`topological_order`."""
        depth: dict[str, int] = {}
        for name in self.topological_order():
            deps = self.steps[name].depends_on
            depth[name] = 1 + max((depth[d] for d in deps), default=-1)
        grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in self.steps:  # definition order within a level
            grouped[depth[name]].append(name)
        return grouped

    def edges(self) -> list[tuple[str, str]]:
        """Every ``(dependency, dependent)`` pair, dependents in definition order."""
        return [(d, n) for n, s in self.steps.items() for d in _unique(s.depends_on)]

    # -- helpers -----------------------------------------------------------------------------

    def _require(self, name: str) -> None:
        if name not in self.steps:
            raise PipelineError(
                f"pipeline {self.name!r} has no step {name!r}{_suggest(name, self.steps)}"
            )

    def _check_dependencies(self) -> None:
        for name, step in self.steps.items():
            for dep in step.depends_on:
                if dep not in self.steps:
                    raise PipelineError(
                        f"pipeline {self.name!r}: step {name!r} depends on unknown step "
                        f"{dep!r}{_suggest(dep, self.steps)}"
                    )

    def _dependents(self) -> dict[str, list[str]]:
        dependents: dict[str, list[str]] = {n: [] for n in self.steps}
        for name, step in self.steps.items():
            for dep in _unique(step.depends_on):
                if dep in dependents:
                    dependents[dep].append(name)
        return dependents

    def _cycle(self, remaining: set[str]) -> list[str]:
        """A cycle among ``remaining`` (steps a topological sort could not place: each has a
        dependency among them), in flow direction, starting and ending at its
        earliest-defined step."""
        index = {n: i for i, n in enumerate(self.steps)}
        node = min(remaining, key=index.__getitem__)
        walk = [node]
        seen = {node: 0}
        while True:  # follow dependencies until a step repeats
            node = min((d for d in self.steps[node].depends_on if d in remaining),
                       key=index.__getitem__)
            if node in seen:
                loop = walk[seen[node]:]
                break
            seen[node] = len(walk)
            walk.append(node)
        loop.reverse()  # dependency direction -> flow direction
        first = min(range(len(loop)), key=lambda i: index[loop[i]])
        loop = loop[first:] + loop[:first]
        return [*loop, loop[0]]


def _cycle_text(cycle: list[str]) -> str:
    return f"cycle: {' -> '.join(cycle)} (each step waits for the one before it)"


def _reach(start: str, neighbours: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    stack = list(neighbours.get(start, []))
    while stack:
        n = stack.pop()
        if n not in found:
            found.add(n)
            stack.extend(neighbours.get(n, []))
    found.discard(start)  # only possible in a cycle
    return found


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _suggest(word: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


# -- the pipeline.yaml schema -------------------------------------------------------------------
#
# ``x-expected`` / ``x-pattern`` are annotations of ours (validators ignore unknown keywords):
# the human wording of what an ``anyOf`` or a ``pattern`` asks for, used in error messages.

PIPELINE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: seconds ("300", "2.5") or hours/minutes/seconds in that order ("1h30m", "90s", "1.5h")
DURATION_PATTERN = (r"^\s*(?:(\d+(?:\.\d+)?)\s*|(?=\d)(?:(\d+(?:\.\d+)?)\s*h\s*)?"
                    r"(?:(\d+(?:\.\d+)?)\s*m\s*)?(?:(\d+(?:\.\d+)?)\s*s\s*)?)$")

_DURATION_WORDS = "a number of seconds > 0 or a duration such as '30s', '5m', '1h30m'"
#: the thresholds a ``validate:`` entry may set (nbmlops.validation.schema.DEFAULT_THRESHOLDS;
#: written out here so that loading a pipeline does not import pandas)
VALIDATION_THRESHOLDS = ("psi", "chi2_pvalue", "range_tolerance", "null_tolerance")

PIPELINE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "nbmlops pipeline.yaml",
    "description": "A named DAG of notebook steps run by nbmlops.",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "steps"],
    "properties": {
        "name": {
            "description": "Name of the pipeline.",
            "type": "string",
            "pattern": PIPELINE_NAME_PATTERN,
            "x-pattern": "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        },
        "description": {"description": "Free text.", "type": "string"},
        "params": {"$ref": "#/$defs/params",
                   "description": "Parameters given to every step (a step's own win)."},
        "defaults": {
            "description": "Default retries/timeout/cache of every step.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "retries": {"$ref": "#/$defs/retries"},
                "timeout": {"$ref": "#/$defs/timeout"},
                "cache": {"$ref": "#/$defs/cache"},
            },
        },
        "steps": {
            "description": "Step name -> step, in definition order.",
            "type": "object",
            "minProperties": 1,
            "propertyNames": {
                "pattern": STEP_NAME_PATTERN,
                "x-pattern": "a step name uses letters, digits, '_' and '-', "
                             "starting with a letter or '_'",
            },
            "additionalProperties": {"$ref": "#/$defs/step"},
        },
    },
    "$defs": {
        "step": {
            "type": "object",
            "additionalProperties": False,
            "required": ["notebook"],
            "properties": {
                "notebook": {
                    "description": "The notebook, relative to the pipeline file's directory.",
                    "type": "string",
                    "minLength": 1,
                },
                "params": {"$ref": "#/$defs/params"},
                "depends_on": {
                    "description": "Steps that must finish first.",
                    "anyOf": [{"type": "string", "minLength": 1},
                              {"type": "array", "items": {"type": "string", "minLength": 1}}],
                    "x-expected": "a step name or a list of step names",
                },
                "inputs": {"$ref": "#/$defs/paths",
                           "description": "Files or globs the step reads (enter the cache key)."},
                "outputs": {"$ref": "#/$defs/paths",
                            "description": "Files or globs the step writes."},
                "retries": {"$ref": "#/$defs/retries"},
                "timeout": {"$ref": "#/$defs/timeout"},
                "cache": {"$ref": "#/$defs/cache"},
                "validate": {
                    "description": "Data checks of inputs (before the step) and outputs "
                                   "(after it) against a reference dataset or saved schema.",
                    "type": "array",
                    "items": {"$ref": "#/$defs/validation"},
                },
                "gate": {"$ref": "#/$defs/gate"},
            },
        },
        "gate": {
            "description": "Register a model the step wrote and promote it only if it beats "
                           "the current champion on held-out data.",
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "name", "data", "target", "metric"],
            "properties": {
                "model": {"description": "The model file the step writes.",
                          "type": "string", "minLength": 1},
                "name": {"description": "Registered model name.", "type": "string",
                         "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                         "x-pattern": "letters, digits, '_', '.' and '-', starting with a "
                                      "letter or digit"},
                "data": {"description": "Held-out data file (csv or parquet).",
                         "type": "string", "minLength": 1},
                "target": {"description": "The label column of the held-out data.",
                           "type": "string", "minLength": 1},
                "metric": {"description": "A scikit-learn scorer name, or a loss (log_loss, "
                                          "rmse, mae ...).", "type": "string", "minLength": 1},
                "min": {"type": "number"},
                "max": {"type": "number"},
                "must_beat": {"description": "The alias the candidate must beat (champion).",
                              "type": ["string", "null"]},
                "by": {"description": "Margin it must beat it by.", "type": "number",
                       "minimum": 0},
                "alias": {"description": "Alias a passing candidate gets (champion).",
                          "type": "string", "minLength": 1},
                "on_reject": {"description": "pass (default): a rejection is an outcome; "
                                             "fail: it fails the step.",
                              "enum": ["pass", "fail"]},
            },
        },
        "validation": {
            "type": "object",
            "additionalProperties": False,
            "required": ["path", "against"],
            "properties": {
                "path": {"description": "The data file to check (an input or an output).",
                         "type": "string", "minLength": 1},
                "against": {"description": "Reference dataset, saved schema (.json) or "
                                           "artifact:ID.", "type": "string", "minLength": 1},
                "thresholds": {"$ref": "#/$defs/thresholds"},
                "on_fail": {"description": "fail (default) or warn.",
                            "enum": ["fail", "warn"]},
                "strict_columns": {"description": "Columns the reference lacks are violations.",
                                   "type": "boolean"},
            },
        },
        "thresholds": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **{k: {"$ref": "#/$defs/threshold"} for k in VALIDATION_THRESHOLDS},
                "columns": {
                    "description": "Column name -> its own thresholds.",
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {k: {"$ref": "#/$defs/threshold"}
                                       for k in VALIDATION_THRESHOLDS},
                    },
                },
            },
        },
        "threshold": {"type": ["number", "null"], "minimum": 0,
                      "x-expected": "a number >= 0, or null to turn the check off"},
        "params": {
            "type": "object",
            "propertyNames": {
                "pattern": PARAM_NAME_PATTERN,
                "x-pattern": "a parameter name must be a Python identifier",
            },
            "additionalProperties": {"$ref": "#/$defs/value"},
        },
        "value": {
            "type": ["null", "boolean", "integer", "number", "string", "array", "object"],
            "x-expected": "a number, string, boolean, null, list or mapping",
            "items": {"$ref": "#/$defs/value"},
            "additionalProperties": {"$ref": "#/$defs/value"},
        },
        "paths": {
            "anyOf": [{"type": "string", "minLength": 1},
                      {"type": "array", "items": {"type": "string", "minLength": 1}}],
            "x-expected": "a path or a list of paths",
        },
        "retries": {"description": "Extra attempts after a failure.",
                    "type": "integer", "minimum": 0, "maximum": 10},
        "timeout": {
            "description": "Seconds (number) or a duration string such as '30s', '5m', '1h30m'.",
            "anyOf": [{"type": "number", "exclusiveMinimum": 0},
                      {"type": "string", "pattern": DURATION_PATTERN,
                       "x-pattern": f"expected {_DURATION_WORDS}"}],
            "x-expected": _DURATION_WORDS,
        },
        "cache": {"description": "Skip the step when an identical earlier run exists.",
                  "type": "boolean"},
    },
}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a duration string (``"300"``, ``"30s"``, ``"5m"``, ``"1h30m"``,
    ``"1.5h"``). Raises :class:`ValueError` for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    m = re.match(DURATION_PATTERN, value)
    if m is None or not any(m.groups()):
        raise ValueError(f"not a duration: {value!r}")
    plain, hours, minutes, seconds = (float(g) if g else 0.0 for g in m.groups())
    return plain + hours * 3600 + minutes * 60 + seconds


# -- loading pipeline.yaml ----------------------------------------------------------------------

_Key = str | int
_NodePath = tuple[_Key, ...]
#: (line, column, message without the file name); sorts by position
_Problem = tuple[int, int, str]

_MAX_NODES = 200_000  # aliases can make a small file expand exponentially ("billion laughs")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


def _where(path: _NodePath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(value: Any) -> str:
    """A value as a person would name it in a YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({_clip(value)!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


class _Positions:
    """1-based (line, column) of every node of a parsed YAML document, by path."""

    def __init__(self) -> None:
        self.values: dict[_NodePath, tuple[int, int]] = {}
        self.keys: dict[_NodePath, tuple[int, int]] = {}

    def at(self, path: _NodePath, *, key: bool = False) -> tuple[int, int]:
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def problem(self, path: _NodePath, message: str, *, key: bool = False,
                where: _NodePath | None = None) -> _Problem:
        """A problem at the node ``path`` (its key if ``key``), described under ``where``
        (default: ``path``)."""
        line, col = self.at(path, key=key)
        prefix = _where(path if where is None else where)
        return (line, col, f"{prefix}: {message}" if prefix else message)


def _mark(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Plain Python data from a composed YAML node tree, recording every node's position and
    refusing duplicate keys (which PyYAML would silently overwrite)."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions = _Positions()
        self.active: set[int] = set()
        self.count = 0

    def fail(self, pos: tuple[int, int], path: _NodePath, message: str) -> PipelineError:
        prefix = f"{_where(path)}: " if path else ""
        return PipelineError(f"{self.file}:{pos[0]}:{pos[1]}: {prefix}{message}")

    def key(self, node: yaml.Node, path: _NodePath) -> str:
        import yaml

        if isinstance(node, yaml.ScalarNode):
            return str(node.value)  # the text as written: `on:` is the key 'on', not True
        kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
        raise self.fail(_mark(node.start_mark), path, f"a key must be a name, not a {kind}")

    def build(self, node: yaml.Node, path: _NodePath, key_pos: tuple[int, int] | None) -> Any:
        import yaml

        self.count += 1
        if self.count > _MAX_NODES:
            raise PipelineError(f"{self.file}: too large: more than {_MAX_NODES} YAML nodes "
                                "once aliases are expanded")
        pos = _mark(node.start_mark)
        if (key_pos is not None and isinstance(node, yaml.ScalarNode) and node.value == ""
                and node.style is None):
            pos = key_pos  # `key:` with nothing after it: point at the key
        self.positions.values[path] = pos
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node, deep=True)
            if isinstance(value, datetime.date):  # YAML timestamps stay text
                return value.isoformat()
            return value
        if node.tag not in (_SEQ_TAG, _MAP_TAG):
            raise self.fail(pos, path, f"unsupported YAML tag {node.tag!r}")
        if id(node) in self.active:
            raise self.fail(pos, path, "recursive YAML alias")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i), None) for i, child in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            first: dict[str, tuple[int, int]] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                k = self.key(key_node, path)
                if k in first:
                    raise self.fail(_mark(key_node.start_mark), path,
                                    f"duplicate key {k!r} (first defined at line {first[k][0]})")
                first[k] = _mark(key_node.start_mark)
            self.loader.flatten_mapping(node)  # `<<: *anchor` merges; own keys come last and win
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                k = self.key(key_node, path)
                kpos = _mark(key_node.start_mark)
                self.positions.keys[(*path, k)] = kpos
                result[k] = self.build(value_node, (*path, k), kpos)
            return result
        finally:
            self.active.discard(id(node))


def _parse_yaml(text: str, file: str) -> tuple[Any, _Positions]:
    import yaml

    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        before = text[: exc.position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        raise PipelineError(f"{file}:{line}:{col}: YAML syntax error: {exc.reason} "
                            f"(character #x{exc.character:04x})") from None
    try:
        node = loader.get_single_node()
        builder = _Builder(loader, file)
        data = None if node is None else builder.build(node, (), None)
        return data, builder.positions
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else file
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"
        elif exc.context and exc.problem and exc.context_mark is not None:
            problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
        kind = "YAML error" if isinstance(exc, yaml.constructor.ConstructorError) else \
            "YAML syntax error"
        raise PipelineError(f"{where}: {kind}: {problem}") from None
    except yaml.YAMLError as exc:  # e.g. a control character the reader refuses
        raise PipelineError(f"{file}: YAML syntax error: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()


_FAST_VALIDATOR: Any = None


def _schema_problems(data: dict[str, Any], positions: _Positions) -> list[_Problem]:
    # fastjsonschema (nbformat's validator, compiled once, ~10 ms) decides; jsonschema, whose
    # import can take seconds where its optional format checkers are installed, only explains
    # a definition that is invalid. `nbmlops pipeline run` of a cached pipeline stays fast.
    global _FAST_VALIDATOR
    try:
        import fastjsonschema

        if _FAST_VALIDATOR is None:
            _FAST_VALIDATOR = fastjsonschema.compile(PIPELINE_SCHEMA)
        _FAST_VALIDATOR(data)
        return []
    except ImportError:
        pass
    except Exception:  # JsonSchemaException, or a schema it cannot compile: ask jsonschema
        pass
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(PIPELINE_SCHEMA)
    problems: list[_Problem] = []
    for error in validator.iter_errors(data):
        problems.extend(_explain(error, positions))
    return sorted(set(problems))


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def _explain(error: jsonschema.ValidationError, positions: _Positions) -> list[_Problem]:
    """One jsonschema error as human problems at the right YAML positions."""
    path: _NodePath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    value: Any = error.instance
    rule_value: Any = error.validator_value
    schema_path = list(error.schema_path)
    if kind == "pattern" and schema_path[-2:-1] == ["propertyNames"]:
        return [positions.problem((*path, value), f"invalid name {value!r}: {schema['x-pattern']}",
                                  key=True, where=path)]
    if kind == "additionalProperties":
        known = list(schema.get("properties", {}))
        return [positions.problem((*path, k), f"unknown key {k!r}{_suggest(k, known)}", key=True,
                                  where=path)
                for k in value if k not in known]
    if kind == "required":
        return [positions.problem(path, f"missing required key {k!r}", key=bool(path))
                for k in rule_value if k not in value]
    if kind in ("anyOf", "oneOf"):
        # a branch that got past its own type check says best what is wrong
        specific = [e for e in error.context or []
                    if not (e.validator == "type" and not e.relative_path)]
        if specific:
            return [p for e in specific for p in _explain(e, positions)]
        return [positions.problem(path, f"expected {schema['x-expected']}, got {_describe(value)}")]
    if kind == "type" and "x-expected" in schema:
        return [positions.problem(path, f"expected {schema['x-expected']}, got {_describe(value)}")]
    if kind == "type":
        words = [_TYPE_WORDS.get(t, t)
                 for t in ([rule_value] if isinstance(rule_value, str) else rule_value)]
        return [positions.problem(path, f"expected {' or '.join(words)}, got {_describe(value)}")]
    if kind == "pattern":
        rule = schema.get("x-pattern", f"must match {rule_value}")
        return [positions.problem(path, f"invalid value {value!r}: {rule}")]
    if kind == "minProperties" and path == ("steps",):
        return [positions.problem(path, "at least one step is required")]
    if kind == "minLength":
        return [positions.problem(path, "must not be empty")]
    if kind == "enum":
        allowed = ", ".join(repr(v) for v in rule_value)
        return [positions.problem(path, f"expected one of {allowed}, got {_describe(value)}")]
    if kind == "exclusiveMinimum":
        return [positions.problem(path, f"must be greater than {rule_value}, "
                                        f"got {value!r}")]
    return [positions.problem(path, error.message)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _item_path(base: _NodePath, raw: Any, i: int) -> _NodePath:
    return (*base, i) if isinstance(raw, list) else base


def _read(p: Path, file: str) -> str:
    if not p.exists():
        raise PipelineError(f"{file}: no such file")
    if p.is_dir():
        raise PipelineError(f"{file}: is a directory, not a pipeline file")
    try:
        return p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise PipelineError(f"{file}: cannot read: {exc.strerror or exc}") from None


def _analyse(path: str | Path) -> tuple[Pipeline | None, list[str]]:
    """The pipeline defined by a ``pipeline.yaml`` and every problem found in it (as full
    one-line messages, in file order). Fatal problems (unreadable file, YAML syntax, wrong
    top level) stop the analysis; schema problems stop it before the semantic checks."""
    file = str(path)
    p = Path(path)
    try:
        data, positions = _parse_yaml(_read(p, file), file)
    except PipelineError as exc:
        return None, [str(exc)]
    if data is None:
        return None, [f"{file}: empty pipeline definition "
                      "(expected a mapping with 'name' and 'steps')"]
    if not isinstance(data, dict):
        line, col = positions.at(())
        return None, [f"{file}:{line}:{col}: the top level must be a mapping with 'name' and "
                      f"'steps', not {_describe(data)}"]

    def report(problems: list[_Problem]) -> list[str]:
        return [f"{file}:{line}:{col}: {text}" for line, col, text in sorted(set(problems))]

    problems = _schema_problems(data, positions)
    if problems:
        return None, report(problems)

    pipeline_path = Path(os.path.normpath(p.absolute()))
    root = pipeline_path.parent
    defaults: dict[str, Any] = data.get("defaults") or {}
    raw_steps: dict[str, dict[str, Any]] = data["steps"]

    def check_params(params: dict[str, Any], at: _NodePath) -> None:
        for k in params:
            if keyword.iskeyword(k):
                problems.append(positions.problem(
                    (*at, k), f"invalid name {k!r}: a Python keyword cannot be a parameter name",
                    key=True, where=at))

    def timeout_of(raw: Any, at: _NodePath) -> float | None:
        if raw is None:
            return None
        seconds = parse_duration(raw)  # the schema already checked the form
        if not seconds > 0:
            problems.append(positions.problem(at, f"must be greater than 0, got {raw!r}"))
        return seconds

    check_params(data.get("params") or {}, ("params",))
    default_timeout = timeout_of(defaults.get("timeout"), ("defaults", "timeout"))
    steps: dict[str, Step] = {}
    for name, raw in raw_steps.items():
        at: _NodePath = ("steps", name)
        notebook_text: str = raw["notebook"]
        notebook = Path(os.path.normpath(root / Path(notebook_text).expanduser()))
        if notebook.is_dir():
            problems.append(positions.problem(
                (*at, "notebook"), f"{notebook_text!r} is a directory, not a notebook"))
        elif not notebook.is_file():
            problems.append(positions.problem(
                (*at, "notebook"),
                f"no such notebook {notebook_text!r}{_suggest_file(notebook_text, notebook)}"))
        raw_deps = raw.get("depends_on")
        for i, dep in enumerate(_as_list(raw_deps)):
            item = _item_path((*at, "depends_on"), raw_deps, i)
            if dep == name:
                problems.append(positions.problem(item, "a step cannot depend on itself"))
            elif dep not in raw_steps:
                problems.append(positions.problem(
                    item, f"unknown step {dep!r}{_suggest(dep, raw_steps)}"))
        params = raw.get("params") or {}
        check_params(params, (*at, "params"))
        timeout = (timeout_of(raw["timeout"], (*at, "timeout")) if "timeout" in raw
                   else default_timeout)
        validations = []
        for i, entry in enumerate(raw.get("validate") or []):
            vat: _NodePath = (*at, "validate", i)
            against = str(entry["against"])
            outputs = {os.path.normpath(str(x)) for s in raw_steps.values()
                       for x in _as_list(s.get("outputs"))}
            if not against.startswith("artifact:") and \
                    not (root / against).exists() and os.path.normpath(against) not in outputs:
                problems.append(positions.problem(
                    (*vat, "against"), f"no such reference file {against!r} (nor an output "
                    "of any step)"))
            elif against.startswith("artifact:") and not against[9:].isdigit():
                problems.append(positions.problem(
                    (*vat, "against"), f"expected artifact:ID with a number, got {against!r}"))
            own_outputs = {os.path.normpath(str(x)) for x in _as_list(raw.get("outputs"))}
            line, col = positions.at(vat)
            validations.append(StepValidation(
                path=str(entry["path"]), against=against,
                thresholds=dict(entry.get("thresholds") or {}),
                on_fail=str(entry.get("on_fail", "fail")),
                strict_columns=bool(entry.get("strict_columns", False)),
                when="after" if os.path.normpath(str(entry["path"])) in own_outputs else "before",
                location=f"{file}:{line}:{col}",
            ))
        gate = None
        if raw.get("gate") is not None:
            g = raw["gate"]
            gat: _NodePath = (*at, "gate")
            own_outputs = {os.path.normpath(str(x)) for x in _as_list(raw.get("outputs"))}
            if os.path.normpath(str(g["model"])) not in own_outputs:
                problems.append(positions.problem(
                    (*gat, "model"), f"{g['model']!r} is not among this step's outputs (the "
                    "gate registers a model the step writes)"))
            line, col = positions.at(gat)
            gate = StepGate(
                model=str(g["model"]), name=str(g["name"]), data=str(g["data"]),
                target=str(g["target"]),
                rule={k: g[k] for k in ("metric", "min", "max", "must_beat", "by", "alias")
                      if k in g},
                on_reject=str(g.get("on_reject", "pass")), location=f"{file}:{line}:{col}",
            )
        steps[name] = Step(
            name=name,
            notebook=notebook,
            params=dict(params),
            depends_on=_unique(_as_list(raw_deps)),
            inputs=[str(x) for x in _as_list(raw.get("inputs"))],
            outputs=[str(x) for x in _as_list(raw.get("outputs"))],
            retries=int(raw.get("retries", defaults.get("retries", 0))),
            timeout=timeout,
            cache=bool(raw.get("cache", defaults.get("cache", True))),
            validations=validations,
            gate=gate,
        )
    if problems:
        return None, report(problems)

    locations: dict[str, str] = {}

    def locate(at: _NodePath, key: bool = True) -> None:
        line, col = positions.at(at, key=key)
        locations[".".join(str(p) for p in at)] = f"{file}:{line}:{col}"

    for k in data.get("params") or {}:
        locate(("params", k))
    for name, raw in raw_steps.items():
        locate(("steps", name))
        for k in raw.get("params") or {}:
            locate(("steps", name, "params", k))
    pipeline = Pipeline(name=data["name"], path=pipeline_path, root=root,
                        params=dict(data.get("params") or {}), steps=steps, locations=locations)
    cycle = pipeline.find_cycle()
    if cycle is not None:
        line, col = positions.at(("steps", cycle[0]), key=True)
        return None, [f"{file}:{line}:{col}: {_cycle_text(cycle)}"]
    return pipeline, []


def _suggest_file(given: str, resolved: Path) -> str:
    try:
        siblings = [f for f in resolved.parent.iterdir() if f.is_file() and f.suffix == resolved.suffix]
    except OSError:
        return ""
    # compare stems: the shared ".ipynb" would make any short name look close
    by_stem = {f.stem: f.name for f in siblings}
    match = difflib.get_close_matches(resolved.stem, list(by_stem), n=1, cutoff=0.6)
    if not match:
        return ""
    parent = Path(given).parent
    return f" (did you mean {(parent / by_stem[match[0]]).as_posix()!r}?)"


def validate_pipeline_yaml(path: str | Path) -> list[str]:
    """Every problem of a ``pipeline.yaml`` as one-line ``FILE:LINE:COL: ...`` messages in file
    order; ``[]`` when it loads. A syntax error, a schema violation or a cycle hides the
    problems of later stages (semantic checks run on a schema-valid file only)."""
    return _analyse(path)[1]


def load_pipeline_yaml(path: str | Path) -> Pipeline:
    """Load and validate a ``pipeline.yaml``.

    Raises :class:`PipelineError` with the first problem in file order,
    ``FILE:LINE:COL: WHERE: WHAT`` (and how many more there are). The result has absolute
    :attr:`Step.notebook` paths, ``defaults`` applied, timeouts in seconds and ``depends_on``,
    ``inputs``, ``outputs`` as lists (paths kept as written, relative to :attr:`Pipeline.root`).
    """
    pipeline, problems = _analyse(path)
    if problems:
        more = len(problems) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise PipelineError(problems[0] + suffix)
    assert pipeline is not None
    return pipeline
