"""The promotion gate: a candidate model takes an alias only if it beats the current holder.

Both models are scored on the same held-out data with the same scikit-learn scorer
(:func:`sklearn.metrics.get_scorer`), so the comparison is fair by construction. A rule is

* ``metric``: a scorer name (``f1_macro``, ``accuracy``, ``roc_auc``, ``r2`` ...) or a loss
  (``log_loss``, ``mse``/``rmse``/``mae`` or any scorer whose ``neg_`` form exists): losses are
  lower-is-better;
* ``min`` / ``max``: absolute bounds the candidate's score must respect;
* ``must_beat``: an alias (``champion``) whose version the candidate must beat, ``by`` a margin
  (``0``: strictly better; ``0.01``: better by at least 0.01). No holder yet: only the bounds
  apply, so the first candidate that meets them is promoted.

The decision, both scores, the data's fingerprint and the rule are recorded as one ``gate``
event of the model; the candidate is registered as a version either way, and only a passing one
is promoted (an ``promote`` event with the gate's reason). Core: no UI imports.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, NotFoundError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ..store import Store

__all__ = ["GateRule", "GateDecision", "gate", "parse_rule", "LOSS_ALIASES"]

#: short names of losses -> sklearn's ``neg_`` scorer names (without ``neg_``)
LOSS_ALIASES = {
    "mse": "mean_squared_error",
    "rmse": "root_mean_squared_error",
    "mae": "mean_absolute_error",
    "logloss": "log_loss",
}
_RULE_KEYS = ("metric", "min", "max", "must_beat", "by", "alias")
#: scorer names scikit-learn has had for years: a rule naming one is accepted without importing
#: scikit-learn (1-1.5 s) just to check it; any other name is checked against sklearn itself
_LONG_KNOWN_METRICS = frozenset({
    "accuracy", "balanced_accuracy", "average_precision", "explained_variance", "r2",
    "f1", "f1_macro", "f1_micro", "f1_weighted", "jaccard", "jaccard_macro", "jaccard_micro",
    "jaccard_weighted", "precision", "precision_macro", "precision_micro", "precision_weighted",
    "recall", "recall_macro", "recall_micro", "recall_weighted", "roc_auc", "roc_auc_ovo",
    "roc_auc_ovr", "roc_auc_ovo_weighted", "roc_auc_ovr_weighted", "matthews_corrcoef",
    "log_loss", "mean_squared_error", "mean_absolute_error", "median_absolute_error",
    "root_mean_squared_error", "max_error", "brier_score", *LOSS_ALIASES,
})


@dataclass(frozen=True)
class GateRule:
    """What a candidate must achieve. ``alias`` is what it gets when it passes."""

    metric: str
    min: float | None = None
    max: float | None = None
    must_beat: str | None = "champion"
    by: float = 0.0
    alias: str = "champion"

    def describe(self) -> str:
        parts = [self.metric]
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.must_beat:
            parts.append(f"beats {self.must_beat}" + (f" by {self.by:g}" if self.by else ""))
        return " ".join(parts) + f" -> {self.alias}"


def _number(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"gate: {key} must be a finite number, not {value!r}")
    return float(value)


def parse_rule(rule: Mapping[str, Any], *, check_metric: bool = True) -> GateRule:
    """A :class:`GateRule` from a mapping (a ``gate:`` block of pipeline.yaml, keyword args).

    ``check_metric=False`` checks the metric name against scikit-learn only when it is not one
    of the long-known scorer names (a pipeline's start should not pay sklearn's import)."""
    unknown = sorted(set(rule) - set(_RULE_KEYS))
    if unknown:
        raise InvalidArgumentError(
            f"gate: unknown rule key {unknown[0]!r}; a rule has {', '.join(_RULE_KEYS)}"
        )
    metric = rule.get("metric")
    if not isinstance(metric, str) or not metric.strip():
        raise InvalidArgumentError("gate: the rule needs a metric, e.g. metric: f1_macro")
    must_beat = rule.get("must_beat", "champion")
    if must_beat is not None and (not isinstance(must_beat, str) or not must_beat.strip()):
        raise InvalidArgumentError(f"gate: must_beat must be an alias name, not {must_beat!r}")
    by = _number("by", rule.get("by", 0.0)) or 0.0
    if by < 0:
        raise InvalidArgumentError(f"gate: by must be >= 0, not {by:g}")
    alias = rule.get("alias", "champion")
    if not isinstance(alias, str) or not alias.strip():
        raise InvalidArgumentError(f"gate: alias must be a name, not {alias!r}")
    out = GateRule(metric=metric.strip(), min=_number("min", rule.get("min")),
                   max=_number("max", rule.get("max")), must_beat=must_beat or None, by=by,
                   alias=alias)
    if check_metric or out.metric.removeprefix("neg_") not in _LONG_KNOWN_METRICS:
        _scorer(out.metric)  # an unknown metric is refused before anything is registered
    return out


def warm_imports() -> None:
    """Import what a gate needs (scikit-learn's scorers, pandas): called in a background thread
    when a gated pipeline starts, so the gate after its last step does not wait for them."""
    try:
        import pandas  # noqa: F401
        import sklearn.metrics  # noqa: F401
    except Exception:  # noqa: BLE001 - the gate itself reports what is missing
        log.debug("gate imports failed", exc_info=True)


def _scorer(metric: str) -> tuple[Any, bool]:
    """``(scorer, lower_is_better)`` for a metric name; an unknown name lists the known ones."""
    from sklearn.metrics import get_scorer, get_scorer_names

    names = set(get_scorer_names())
    base = LOSS_ALIASES.get(metric, metric)
    if metric in names:
        return get_scorer(metric), False
    if f"neg_{base}" in names:
        return get_scorer(f"neg_{base}"), True
    import difflib

    known = sorted({n.removeprefix("neg_") for n in names} | set(LOSS_ALIASES))
    hint = difflib.get_close_matches(metric, known, n=1)
    raise InvalidArgumentError(
        f"gate: metric {metric!r} is not computed by the gate"
        + (f" (did you mean {hint[0]!r}?)" if hint else "")
        + "; it scores with scikit-learn's scorers, e.g. accuracy, f1_macro, roc_auc, "
        "log_loss, r2, rmse"
    )


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, with everything needed to audit it later."""

    name: str
    promoted: bool
    rule: dict[str, Any]
    metric: str
    lower_is_better: bool
    candidate_version: int
    candidate_score: float
    champion_version: int | None
    champion_score: float | None
    data_fingerprint: str
    rows: int
    reasons: list[str] = field(default_factory=list)
    event_id: int | None = None
    #: the candidate is the version already holding the alias (the same model again)
    unchanged: bool = False

    @property
    def decision(self) -> str:
        """``promoted``, ``rejected``, or ``unchanged`` (the candidate already held it)."""
        return "promoted" if self.promoted else "unchanged" if self.unchanged else "rejected"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "decision": self.decision}

    def __str__(self) -> str:
        champ = (f"v{self.champion_version} {self.champion_score:.4f}"
                 if self.champion_version is not None and self.champion_score is not None
                 else "none")
        head = (f"gate {self.name}: candidate v{self.candidate_version} "
                f"{self.metric}={self.candidate_score:.4f}, {self.rule.get('must_beat') or 'holder'}"
                f" {champ} -> {self.decision.upper()}")
        return "\n".join([head, *(f"  - {r}" for r in self.reasons)])

    def _repr_html_(self) -> str:
        color = "var(--jp-success-color1, #2e7d32)" if self.promoted else "var(--jp-error-color1, #c62828)"
        rows = "".join(f"<li>{escape(r)}</li>" for r in self.reasons)
        champ = ("none" if self.champion_version is None or self.champion_score is None
                 else f"v{self.champion_version}: {self.champion_score:.4f}")
        return (
            f"<div class='nbmlops-gate'><b style='color:{color}'>{escape(self.decision)}</b> "
            f"{escape(self.name)} v{self.candidate_version} ({escape(self.metric)} "
            f"{self.candidate_score:.4f}; {escape(str(self.rule.get('must_beat') or 'holder'))} "
            f"{escape(champ)}; {self.rows} rows, data {escape(self.data_fingerprint[:19])})"
            f"<ul>{rows}</ul></div>"
        )


def _xy(data: Any, target: str | None, X: Any, y: Any
        ) -> tuple[Any, Any, str, dict[str, Any] | None]:
    """The held-out features and labels, a fingerprint of exactly those rows, and the file they
    came from (path and content fingerprint) when ``data`` is one."""
    source = None
    if data is not None:
        if X is not None or y is not None:
            raise InvalidArgumentError("gate: give either data= (with target=) or X= and y=")
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.is_file():
                raise NotFoundError(f"gate: no held-out data file {path}")
            import pandas as pd

            from ..fingerprint import fingerprint_file

            fp = fingerprint_file(path)
            source = {"uri": str(path.resolve()), "fingerprint": fp[0] if fp else None}
            data = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        if target is None or target not in getattr(data, "columns", ()):
            cols = ", ".join(map(str, getattr(data, "columns", [])))
            raise InvalidArgumentError(
                f"gate: target column {target!r} is not in the held-out data (columns: {cols})"
            )
        X, y = data.drop(columns=[target]), data[target]
    if X is None or y is None:
        raise InvalidArgumentError("gate: held-out data is needed: data= and target=, or X= and y=")
    return X, y, _fingerprint(X, y), source


def _fingerprint(X: Any, y: Any) -> str:
    import numpy as np
    import pandas as pd

    h = hashlib.sha256()
    for part in (X, y):
        if isinstance(part, (pd.DataFrame, pd.Series)):
            h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())
            cols = list(part.columns) if isinstance(part, pd.DataFrame) else [part.name]
            h.update(repr(cols).encode())
        else:
            arr = np.ascontiguousarray(np.asarray(part))
            h.update(repr((arr.shape, str(arr.dtype))).encode())
            h.update(arr.tobytes() if arr.dtype != object else repr(arr.tolist()).encode())
    return f"sha256:{h.hexdigest()}"


def _score(scorer: Any, lower: bool, model: Any, X: Any, y: Any, label: str, metric: str) -> float:
    try:
        value = float(scorer(model, X, y))
    except Exception as exc:  # noqa: BLE001 - any failure of the model is the user's to see
        raise InvalidArgumentError(
            f"gate: metric {metric!r} could not be computed for {label}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not math.isfinite(value):
        raise InvalidArgumentError(f"gate: metric {metric!r} of {label} is not finite ({value})")
    return -value if lower else value


def _session_run() -> str | None:
    """The run of this kernel's capture session, if one is active."""
    from ..capture.session import active_session

    session = active_session()
    return session.run_id if session is not None else None


def _same_file_version(store: Store, name: str, path: Path) -> Any:
    """The version of ``name`` whose stored file has exactly ``path``'s content, if any (a
    re-run that wrote the same model is not registered twice)."""
    from ..store.artifacts import sha256_file
    from . import service

    digest = sha256_file(path)
    try:
        versions = service.list_versions(store, name)
    except NotFoundError:
        return None
    return next((v for v in versions if v.digest == digest), None)


def gate(
    candidate: Any,
    *,
    name: str,
    metric: str,
    data: Any = None,
    target: str | None = None,
    X: Any = None,
    y: Any = None,
    min: float | None = None,  # noqa: A002 - the rule's own word
    max: float | None = None,  # noqa: A002
    must_beat: str | None = "champion",
    by: float = 0.0,
    alias: str = "champion",
    reason: str | None = None,
    run_id: str | None = None,
    store: Store | None = None,
) -> GateDecision:
    """Register ``candidate`` (a fitted model, a model file, or ``models:/NAME/VERSION``) under
    ``name``, score it and the version holding ``must_beat`` on the same held-out data, and move
    ``alias`` to the candidate only if the rule holds. Returns the :class:`GateDecision`.

    Errors (nothing registered or recorded): an unknown metric, held-out data missing its target,
    a metric the candidate cannot produce."""
    from . import service

    rule = parse_rule({"metric": metric, "min": min, "max": max, "must_beat": must_beat,
                       "by": by, "alias": alias})
    scorer, lower = _scorer(rule.metric)
    X_, y_, fingerprint, source = _xy(data, target, X, y)
    if store is None:
        from ..query import default_store

        store = default_store()  # shared by the process: not closed here
    run_id = run_id or _session_run()
    if isinstance(candidate, str) and candidate.startswith("models:/"):
        version = service.resolve_model_uri(store, candidate)
        if version.model != name:
            raise InvalidArgumentError(
                f"gate: candidate {candidate} is a version of {version.model}, not {name}"
            )
        model = service.load_model(candidate, store=store)
        cand = _score(scorer, lower, model, X_, y_, f"{name} v{version.version}", rule.metric)
    else:
        model = (service.load_model(str(candidate), store=store)
                 if isinstance(candidate, (str, os.PathLike)) else candidate)
        # scored before it is registered: a model that cannot be scored leaves no version
        cand = _score(scorer, lower, model, X_, y_, "the candidate", rule.metric)
        same = (_same_file_version(store, name, Path(candidate))
                if isinstance(candidate, (str, os.PathLike)) else None)
        from .signature import infer_signature

        version = same or service.register(
            store, candidate, name=name, run_id=run_id,
            signature=infer_signature(model, X_, y_) | {"source": "held-out data"},
            reason=reason or "gate candidate",
        )
    holder = None
    if rule.must_beat:
        try:
            holder = service.resolve_model_uri(store, f"models:/{name}@{rule.must_beat}")
        except NotFoundError:
            holder = None
    champ: float | None = None
    reasons: list[str] = []
    ok = True
    if rule.min is not None and cand < rule.min:
        ok = False
        reasons.append(f"{rule.metric} {cand:.4f} < min {rule.min:g}")
    if rule.max is not None and cand > rule.max:
        ok = False
        reasons.append(f"{rule.metric} {cand:.4f} > max {rule.max:g}")
    unchanged = holder is not None and holder.version == version.version
    if unchanged:
        ok = False
        champ = cand  # the same model, scored once
        reasons.append(f"v{version.version} already holds {rule.must_beat}")
    elif holder is not None:
        champ_model = service.load_model(holder.uri, store=store)
        champ = _score(scorer, lower, champ_model, X_, y_,
                       f"{rule.must_beat} v{holder.version}", rule.metric)
        gain = (champ - cand) if lower else (cand - champ)
        if (gain <= 0) if rule.by == 0 else (gain < rule.by - 1e-12):
            ok = False
            need = "better than" if rule.by == 0 else f"better by {rule.by:g} than"
            reasons.append(f"{rule.metric} {cand:.4f} is not {need} {rule.must_beat} "
                           f"v{holder.version} ({champ:.4f})")
        else:
            reasons.append(f"{rule.metric} {cand:.4f} beats {rule.must_beat} "
                           f"v{holder.version} ({champ:.4f})"
                           + (f" by {abs(gain):.4f} >= {rule.by:g}" if rule.by else ""))
    elif rule.must_beat:
        reasons.append(f"no {rule.must_beat} yet: bounds only")
    if ok and (rule.min is not None or rule.max is not None):
        reasons.append(f"{rule.metric} {cand:.4f} within bounds")
    def record(decided: bool) -> Any:
        details = {
            "rule": asdict(rule), "metric": rule.metric, "lower_is_better": lower,
            "decision": "promoted" if decided else "unchanged" if unchanged else "rejected",
            "candidate": {"version": version.version, "score": cand},
            "champion": ({"version": holder.version, "score": champ}
                         if holder is not None else None),
            "data_fingerprint": fingerprint, "rows": int(len(y_)), "reasons": reasons,
            "data_file": source,
        }
        return service.record_event(
            store, name, "gate", details=details, reason=reason, run_id=run_id,
            to_version=version.version, alias=rule.alias,
        )

    event = record(ok)
    if ok:
        # only if the alias still points where the comparison saw it (another gate or a person
        # may have moved it meanwhile): else the candidate was not compared with its holder
        from ..store.registry import AliasError

        expect: int | None | bool = True
        if rule.alias == rule.must_beat:
            expect = holder.version if holder is not None else None
        try:
            service.promote(store, name, version.version, alias=rule.alias,
                            reason=f"{reason or 'gate'}: {'; '.join(reasons)}", expect=expect)
        except AliasError as exc:
            ok = False
            reasons.append(f"not promoted: {exc}")
            event = record(False)  # the decision that stands
    return GateDecision(
        name=name, promoted=ok, rule=asdict(rule), metric=rule.metric, lower_is_better=lower,
        candidate_version=version.version, candidate_score=cand,
        champion_version=holder.version if holder is not None else None,
        champion_score=champ, data_fingerprint=fingerprint, rows=int(len(y_)),
        reasons=reasons, event_id=getattr(event, "id", None), unchanged=unchanged,
    )
