"""``monitor()``: a served model's logged traffic against the data it was trained on.

Per feature: the validation statistics (:func:`nbmlops.validation.schema.check_frame`: PSI over
the reference's quantile bins or categories, judged beyond the PSI that samples of these sizes
show by chance), plus the shares behind them for the report's histograms. Prediction drift: the
same check of the logged predictions against the model's own predictions on the reference.
Performance where labels were joined. A breakdown per alias (champion/challenger/shadow).

The reference is the registered version's training data, found through lineage (the datasets
read upstream of the fitting cell, without the gate's held-out file), profiled once and cached
under the artifact root keyed by the data's content fingerprint (and the model's digest for the
prediction profile), so a drift trigger polling every minute never re-reads the training file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, NotFoundError
from .predlog import INPUT_PREFIX, list_parts, read_predictions

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store
    from ..store.entities import ModelVersion
    from ..validation.schema import Schema

__all__ = ["MonitorReport", "monitor", "parse_window", "resolve_target", "DEFAULT_THRESHOLD"]

log = logging.getLogger(__name__)

#: the PSI beyond chance above which a feature has drifted (validation's default)
DEFAULT_THRESHOLD = 0.2
_PROFILE_FORMAT = "nbmlops.monitor.reference/1"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)


# -- the report ----------------------------------------------------------------------------------


@dataclass
class MonitorReport:
    """One monitoring check. ``score`` is the largest feature PSI beyond chance (>= 0);
    ``drifted`` when it exceeds ``threshold`` (and at least ``min_rows`` rows were seen)."""

    model: str
    alias: str | None
    version: int
    window: str | None
    rows: int
    labeled_rows: int
    since: float | None
    until: float | None
    threshold: float
    drifted: bool
    score: float
    features: list[dict[str, Any]] = field(default_factory=list)
    prediction: dict[str, Any] | None = None
    performance: dict[str, float] | None = None
    by_alias: dict[str, dict[str, Any]] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    violations: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    judged: bool = True
    created_at: float = field(default_factory=time.time)
    id: int | None = None

    @property
    def target(self) -> str:
        return f"{self.model}@{self.alias}" if self.alias else f"{self.model}/{self.version}"

    @property
    def drifted_features(self) -> list[str]:
        return [f["name"] for f in self.features if f.get("drifted")]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe(asdict(self))

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def text(self) -> str:
        from .report import render_text

        return render_text(self.to_dict())

    def to_html(self, *, full: bool = True) -> str:
        from .report import render_html

        return render_html(self.to_dict(), full=full)

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.write_text(self.to_html(full=True), encoding="utf-8")
        return p

    def _repr_html_(self) -> str:
        return self.to_html(full=False)

    def __str__(self) -> str:
        return self.text()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return _json_safe(value.item())
    return value


# -- arguments -----------------------------------------------------------------------------------


def parse_window(window: str | int | None) -> tuple[float | None, int | None]:
    """``"30m"``/``"1h"``/``"2d"``/``"1w"``/``"45s"`` -> (seconds, None); ``"10000"`` -> (None,
    10000 rows); None -> (None, None). Anything else: :class:`InvalidArgumentError`."""
    if window is None:
        return None, None
    if isinstance(window, bool):
        raise InvalidArgumentError(f"invalid window {window!r}")
    if isinstance(window, int):
        text = str(window)
    else:
        text = str(window).strip()
    if re.fullmatch(r"\d+", text):
        rows = int(text)
        if rows <= 0:
            raise InvalidArgumentError(f"invalid window {window!r}: a row count must be > 0")
        return None, rows
    m = _WINDOW.match(text)
    if m is None:
        raise InvalidArgumentError(
            f"invalid window {window!r}: expected a duration (45s, 30m, 1h, 2d, 1w) or a row "
            "count (10000)")
    seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds <= 0:
        raise InvalidArgumentError(f"invalid window {window!r}: a duration must be > 0")
    return seconds, None


def resolve_target(store: Store, target: str) -> tuple[ModelVersion, str | None]:
    """``NAME@ALIAS`` / ``NAME/VERSION`` / ``NAME`` (champion when set, else latest) -> the
    version and the alias it was named by (None for an explicit version)."""
    from ..registry import service

    text = (target or "").strip()
    if text.startswith(service.MODEL_URI_PREFIX):
        text = text[len(service.MODEL_URI_PREFIX):]
    if not text:
        raise InvalidArgumentError("monitor: a model is needed (NAME@ALIAS, NAME/VERSION or NAME)")
    if "@" in text:
        name, _, alias = text.partition("@")
        return service.get_version(store, service.check_name(name),
                                   alias=service.check_alias(alias)), alias
    if "/" in text:
        name, _, num = text.partition("/")
        if num == "latest":
            return service.get_version(store, service.check_name(name)), None
        if not num.isdigit():
            raise InvalidArgumentError(
                f"monitor: {target!r}: expected NAME@ALIAS, NAME/VERSION or NAME")
        return service.get_version(store, service.check_name(name), int(num)), None
    name = service.check_name(text)
    model = service.get_model(store, name)
    if "champion" in model.aliases:
        return service.get_version(store, name, alias="champion"), "champion"
    return service.get_version(store, name), None


def _threshold(value: float | None) -> float:
    if value is None:
        return DEFAULT_THRESHOLD
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise InvalidArgumentError(f"threshold must be a number >= 0, got {value!r}")
    return float(value)


# -- the reference -------------------------------------------------------------------------------


@dataclass
class _Reference:
    schema: Schema
    uri: str
    fingerprint: str | None
    rows: int | None
    #: where the data can be read (None: a saved schema, or gone): for the model's predictions
    source: str | None = None
    suffix: str = ""
    notes: list[str] = field(default_factory=list)


def _cache_dir(store: Store) -> Path:
    return store.artifacts.root / "monitoring"


def _cache_path(store: Store, kind: str, *parts: str) -> Path:
    key = hashlib.sha256("\0".join((_PROFILE_FORMAT, kind, *parts)).encode()).hexdigest()
    return _cache_dir(store) / f"{kind}-{key[:40]}.json"


def _cache_read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _PROFILE_FORMAT else None


def _cache_write(path: Path, data: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": _PROFILE_FORMAT, **data}, sort_keys=True,
                                  allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:  # a cache that cannot be written is only slower
        log.warning("monitor: reference profile not cached: %s", exc)


def _gate_files(store: Store, name: str) -> tuple[set[str], set[str]]:
    """URIs and file fingerprints of the held-out data the gate scored this model on."""
    from ..registry import service

    uris: set[str] = set()
    fps: set[str] = set()
    for event in service.model_history(store, name):
        if event.kind != "gate":
            continue
        source = (event.details or {}).get("data_file") or {}
        if source.get("uri"):
            uris.add(str(source["uri"]))
        if source.get("fingerprint"):
            fps.add(str(source["fingerprint"]))
    return uris, fps


def _schema_columns(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    return [str(c.get("name")) for c in schema.get("columns") or [] if isinstance(c, dict)]


def _schema_rows(schema: Any) -> int:
    if isinstance(schema, dict) and isinstance(schema.get("shape"), list) and schema["shape"]:
        try:
            return int(schema["shape"][0])
        except (TypeError, ValueError):
            return 0
    return 0


def _training_dataset(store: Store, version: ModelVersion, features: list[str]
                      ) -> tuple[dict[str, Any], list[str]]:
    """The dataset the version was trained on, from lineage; notes on the choice."""
    from ..registry import service

    lineage = service.version_lineage(store, version)
    datasets = [d for d in lineage["datasets"] if d.get("uri")]
    if not datasets:
        raise NotFoundError(
            f"monitor: {version.uri} has no training data in its lineage (registered outside a "
            "captured run?): pass a reference file (reference=... / --reference FILE)")
    wanted = set(features)
    fitting = [d for d in datasets if wanted and wanted <= set(_schema_columns(d.get("schema")))]
    if not fitting:
        fitting = [d for d in datasets if set(_schema_columns(d.get("schema"))) & wanted] or datasets
    uris, fps = _gate_files(store, version.model)
    held_out = [d for d in fitting if d["uri"] in uris or d.get("fingerprint") in fps]
    remaining = [d for d in fitting if d not in held_out]
    notes: list[str] = []
    if not remaining:
        remaining = held_out
        notes.append("the only dataset in the lineage is the gate's held-out data; used it")
    best = max(remaining, key=lambda d: (_schema_rows(d.get("schema")), d.get("size") or 0))
    return best, notes


def _readable_copy(store: Store, dataset: dict[str, Any]) -> str | None:
    """The recorded content of a dataset: the file itself while its fingerprint still matches,
    else the store's copy when it keeps one."""
    from ..fingerprint import fingerprint_file

    uri = str(dataset["uri"])
    fp = fingerprint_file(uri) if Path(uri).is_file() else None
    if fp is not None and (dataset.get("fingerprint") in (None, fp[0])):
        return uri
    if dataset.get("id") is not None:
        try:
            art = store.validations.artifact(int(dataset["id"]))
        except NotFoundError:
            return None
        copy = store.artifacts.local_copy(art.stored_path)
        if copy is not None:
            return str(copy)
    return None


def _load(source: str, suffix: str) -> pd.DataFrame:
    from ..validation.service import _load_as

    return _load_as(source, suffix)


def _profile(store: Store, source: str | None, uri: str, fingerprint: str | None, suffix: str
             ) -> tuple[Schema, int | None]:
    """The validation schema of a dataset, from the cache when its fingerprint was seen."""
    from ..validation.schema import Schema, infer_schema

    cache = _cache_path(store, "reference", fingerprint) if fingerprint else None
    if cache is not None:
        cached = _cache_read(cache)
        if cached is not None:
            schema = Schema.from_dict(cached["schema"], str(cache))
            return schema, schema.rows
    if source is None:
        raise NotFoundError(
            f"monitor: the training data {uri} is gone or changed since the model was trained, "
            "and the store keeps no copy: pass a reference file (--reference FILE)")
    frame = _load(source, suffix)
    schema = infer_schema(frame, source={"uri": uri, "fingerprint": fingerprint})
    if cache is not None:
        _cache_write(cache, {"schema": schema.to_dict()})
    return schema, schema.rows


def _reference(store: Store, version: ModelVersion, features: list[str],
               reference: str | os.PathLike[str] | None) -> _Reference:
    from ..fingerprint import fingerprint_file
    from ..validation.schema import Schema

    if reference is not None:
        path = Path(reference)
        if not path.is_file():
            raise NotFoundError(f"no reference file {path}")
        if path.suffix.lower() == ".json":
            schema = Schema.load(path)
            return _Reference(schema, str(path.resolve()), None, schema.rows, None, ".json",
                              ["reference is a saved schema: no prediction drift"])
        fp = fingerprint_file(path)
        fingerprint = fp[0] if fp else None
        schema, rows = _profile(store, str(path), str(path.resolve()), fingerprint, path.suffix)
        return _Reference(schema, str(path.resolve()), fingerprint, rows, str(path), path.suffix)
    dataset, notes = _training_dataset(store, version, features)
    uri = str(dataset["uri"])
    source = _readable_copy(store, dataset)
    fingerprint = dataset.get("fingerprint")
    schema, rows = _profile(store, source, uri, fingerprint, Path(uri).suffix)
    return _Reference(schema, uri, fingerprint, rows, source, Path(uri).suffix, notes)


def _signature_features(version: ModelVersion) -> list[str]:
    inputs = (version.signature or {}).get("inputs") or {}
    return [str(c["name"]) for c in inputs.get("columns") or [] if isinstance(c, dict)
            and "name" in c]


def _is_classifier(version: ModelVersion, predictions: pd.Series | None) -> bool:
    kind = ((version.signature or {}).get("output") or {}).get("kind")
    if kind in ("classification", "regression"):
        return kind == "classification"
    if predictions is not None:
        from pandas.api import types as t

        return not t.is_float_dtype(predictions.dtype)
    return False


def _prediction_profile(store: Store, version: ModelVersion, ref: _Reference,
                        features: list[str], classifier: bool) -> tuple[Schema | None, str | None]:
    """The validation schema of the model's predictions on the reference data (cached by data
    fingerprint + model digest); (None, why) when it cannot be had."""
    import numpy as np
    import pandas as pd

    from ..registry import service
    from ..validation import drift
    from ..validation.schema import Schema, infer_schema

    cache = (_cache_path(store, "prediction", ref.fingerprint, version.digest)
             if ref.fingerprint else None)
    if cache is not None:
        cached = _cache_read(cache)
        if cached is not None:
            return Schema.from_dict(cached["schema"], str(cache)), None
    if ref.source is None:
        return None, "reference data not readable: no prediction drift"
    try:
        frame = _load(ref.source, ref.suffix)
        model = service.load_model(version.uri, store)
        names = getattr(model, "feature_names_in_", None)
        columns = [str(c) for c in names] if names is not None else features
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            return None, ("reference data lacks the model's inputs "
                          f"({', '.join(missing[:5])}): no prediction drift")
        X = frame[columns]
        if len(X) > drift.DRIFT_SAMPLE:
            X = X.iloc[np.sort(np.random.default_rng(0).choice(len(X), drift.DRIFT_SAMPLE,
                                                                replace=False))]
        predicted = np.asarray(model.predict(X))
    except NotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model that cannot score its own data
        return None, f"the model could not predict on the reference data ({type(exc).__name__}: " \
                     f"{str(exc).splitlines()[0] if str(exc) else ''}): no prediction drift"
    if predicted.ndim != 1:
        return None, "multi-output predictions: no prediction drift"
    column = (pd.Series(predicted.astype(str)) if classifier
              else pd.Series(predicted.astype(np.float64)))
    schema = infer_schema(pd.DataFrame({"prediction": column}),
                          source={"uri": ref.uri, "model": version.uri})
    if cache is not None:
        _cache_write(cache, {"schema": schema.to_dict()})
    return schema, None


# -- statistics ----------------------------------------------------------------------------------


def _numbers(s: pd.Series) -> Any:
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values[~np.isnan(values)]


def _shares(s: pd.Series, ref: dict[str, Any]) -> dict[str, Any]:
    """The bins/categories of a reference column with the reference's and the current shares
    (what the report draws; PSI itself comes from check_frame)."""
    from ..validation import drift
    from ..validation.schema import _plain

    kind = ref.get("kind")
    if kind == "numeric":
        edges = list(ref.get("bins") or [])
        values = drift.sample(_numbers(s))
        return {"edges": edges, "expected": list(ref.get("expected") or []),
                "actual": drift.bin_fractions(values, edges), "min": ref.get("min"),
                "max": ref.get("max")}
    if kind == "categorical":
        known = [(_plain(v), float(share)) for v, share in ref.get("categories") or []]
        counts = s.value_counts(dropna=True)
        observed = {k: 0 for k, _ in known}
        other = 0
        for value, count in counts.items():
            key = _plain(value)
            if key in observed:
                observed[key] += int(count)
            else:
                other += int(count)
        total = sum(observed.values()) + other
        cats = [str(k) for k, _ in known]
        expected = [share for _, share in known]
        actual = [observed[k] / total if total else 0.0 for k, _ in known]
        if other:
            cats.append("(other)")
            expected.append(0.0)
            actual.append(other / total)
        return {"categories": cats, "expected": expected, "actual": actual}
    return {}


def _check(frame: pd.DataFrame, schema: Schema, threshold: float
           ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Validation's checks of ``frame`` against ``schema``: per-column drift entries and the
    other violations (dtype, range, new categories, nulls)."""
    from ..validation.schema import Schema as _Schema
    from ..validation.schema import Thresholds, check_frame

    sub = _Schema({c: schema.columns[c] for c in frame.columns if c in schema.columns},
                  rows=schema.rows, source=schema.source)
    violations, summary = check_frame(frame, sub, Thresholds({"psi": threshold}))
    entries = []
    for name, ref in sub.columns.items():
        stat = summary["columns"].get(name, {})
        psi = stat.get("psi")
        noise = stat.get("psi_noise")
        beyond = max(0.0, psi - (noise or 0.0)) if psi is not None else None
        entry = {"name": name, "kind": ref.get("kind"), "dtype": ref.get("dtype"),
                 "psi": psi, "noise": noise, "beyond_noise": beyond, "threshold": threshold,
                 "drifted": beyond is not None and beyond > threshold,
                 "null_fraction": stat.get("null_fraction"),
                 **_shares(frame[name], ref)}
        entries.append(entry)
    return entries, [v for v in violations if v.get("check") != "drift"]


def _performance(frame: pd.DataFrame, classifier: bool) -> dict[str, float] | None:
    import numpy as np
    import pandas as pd

    if "label" not in frame.columns:
        return None
    labeled = frame[frame["label"].notna()]
    if labeled.empty:
        return None
    if classifier:
        from sklearn.metrics import f1_score

        y_true = labeled["label"].astype(str).to_numpy()
        y_pred = labeled["prediction"].astype(str).to_numpy()
        return {"accuracy": float(np.mean(y_true == y_pred)),
                "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
    y_true = pd.to_numeric(labeled["label"], errors="coerce").to_numpy(dtype=float)
    y_pred = pd.to_numeric(labeled["prediction"], errors="coerce").to_numpy(dtype=float)
    ok = ~(np.isnan(y_true) | np.isnan(y_pred))
    if not ok.any():
        return None
    err = y_pred[ok] - y_true[ok]
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}


def _by_alias(frame: pd.DataFrame, classifier: bool) -> dict[str, dict[str, Any]]:
    import numpy as np

    out: dict[str, dict[str, Any]] = {}
    if frame.empty:
        return out
    alias = frame["alias"].fillna("").astype(str)
    versions = frame["version"].astype("int64")
    key = alias.where(alias != "", "v" + versions.astype(str))
    shadow = frame["role"].astype(str) == "shadow"
    key = key.where(~shadow, key + " (shadow)")
    for name, group in frame.groupby(key.to_numpy(), sort=True):
        per_request = group.drop_duplicates("request_id")
        latency = per_request["latency_ms"].to_numpy(dtype=float)
        entry: dict[str, Any] = {
            "rows": int(len(group)), "requests": int(len(per_request)),
            "versions": sorted(int(v) for v in group["version"].unique()),
            "p50_ms": float(np.percentile(latency, 50)) if len(latency) else None,
            "p99_ms": float(np.percentile(latency, 99)) if len(latency) else None,
            "accuracy": None,
        }
        perf = _performance(group, classifier)
        if perf:
            entry["labeled_rows"] = int(group["label"].notna().sum())
            entry.update(perf)
            entry.setdefault("accuracy", None)
        out[str(name)] = entry
    return out


# -- monitor -------------------------------------------------------------------------------------


def _no_traffic(target: str, version: ModelVersion, window: str | None, directory: Path) -> str:
    parts = list_parts(directory)
    where = f" in the last {window}" if window and not window.strip().isdigit() else ""
    if not parts:
        return (f"no predictions logged for {target}{where}: no prediction log at {directory} "
                f"(serve it with: nbmlops serve {target})")
    newest = parts[-1].name.split("-")[1]
    try:
        age = time.time() - int(newest) / 1000.0
        when = f"; the newest log file is {_ago(age)} old"
    except ValueError:
        when = ""
    return (f"no predictions logged for {target}{where}: {len(parts)} log files under "
            f"{directory} hold no rows of version {version.version}{when}")


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def monitor(
    store: Store,
    target: str,
    *,
    window: str | None = None,
    reference: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    min_rows: int = 1,
    record: bool = True,
    source: str = "cli",
) -> MonitorReport:
    """Check ``target``'s logged traffic (``NAME@ALIAS``, ``NAME/VERSION``, ``NAME``) in
    ``window`` (``"1h"``, ``"30m"``, ``"10000"`` rows, None = all) against its training data (or
    ``reference``, a dataset file or a saved schema). Recorded in ``store.monitoring`` unless
    ``record=False``. No logged rows: :class:`NotFoundError`; bad window or threshold:
    :class:`InvalidArgumentError`; unknown model/alias: the registry's :class:`NotFoundError`."""
    import pandas as pd

    limit = _threshold(threshold)
    seconds, last_rows = parse_window(window)
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise InvalidArgumentError(f"min_rows must be an integer >= 1, got {min_rows!r}")
    version, alias = resolve_target(store, target)
    shown = f"{version.model}@{alias}" if alias else f"{version.model}/{version.version}"
    window_text = None if window is None else str(window).strip()
    directory = store.location.predictions_dir / version.model
    now = time.time()
    since = now - seconds if seconds is not None else None

    signature = _signature_features(version)
    base = ["request_id", "row", "ts", "version", "alias", "role", "latency_ms", "prediction"]
    inputs_wanted = [INPUT_PREFIX + f for f in signature] if signature else None
    wanted = None if inputs_wanted is None else base + inputs_wanted
    everything: pd.DataFrame | None = None
    if last_rows is None:
        # one scan: this version's primary rows for drift, every alias/role for the breakdown
        everything = read_predictions(directory, since=since, role=None, columns=wanted)
        if everything.empty:
            frame = everything
        else:
            mine = (everything["version"].to_numpy() == version.version) & \
                (everything["role"].to_numpy() == "primary")
            frame = everything[mine]
    else:
        frame = read_predictions(directory, last_rows=last_rows, version=version.version,
                                 role="primary", columns=wanted)
    if frame.empty:
        raise NotFoundError(_no_traffic(shown, version, window_text, directory))
    logged = [c[len(INPUT_PREFIX):] for c in frame.columns if str(c).startswith(INPUT_PREFIX)]
    features = [f for f in signature if f in logged] if signature else logged
    notes: list[str] = []
    if signature and len(features) < len(signature):
        absent = [f for f in signature if f not in logged]
        notes.append(f"signature columns not logged (not checked): {', '.join(absent[:10])}")
    ref = _reference(store, version, features or signature, reference)
    notes.extend(ref.notes)
    current = pd.DataFrame({f: frame[INPUT_PREFIX + f] for f in features
                            if f in ref.schema.columns})
    unknown = [f for f in features if f not in ref.schema.columns]
    if unknown:
        notes.append(f"features not in the reference data: {', '.join(unknown[:10])}")
    entries, violations = _check(current, ref.schema, limit)
    score = max((e["beyond_noise"] or 0.0 for e in entries), default=0.0)

    classifier = _is_classifier(version, frame["prediction"])
    prediction: dict[str, Any] | None = None
    pred_schema, why = _prediction_profile(store, version, ref, signature or features, classifier)
    if pred_schema is None:
        if why:
            notes.append(why)
    else:
        logged_pred = frame["prediction"].astype(str) if classifier else \
            pd.to_numeric(frame["prediction"], errors="coerce")
        pred_entries, _ = _check(pd.DataFrame({"prediction": logged_pred}), pred_schema, limit)
        if pred_entries:
            p = pred_entries[0]
            prediction = {"kind": p["kind"], "psi": p["psi"], "noise": p["noise"],
                          "beyond_noise": p["beyond_noise"], "drifted": p["drifted"],
                          "expected": p.get("expected"), "actual": p.get("actual"),
                          "labels": p.get("categories") if classifier else None,
                          "edges": p.get("edges")}

    labeled = int(frame["label"].notna().sum()) if "label" in frame.columns else 0
    performance = _performance(frame, classifier)
    # every alias and role served over the same span, for the champion/challenger comparison
    if everything is None:
        everything = read_predictions(directory, since=float(frame["ts"].min()), role=None,
                                      columns=base)
        everything = everything[everything["ts"] <= float(frame["ts"].max())]
    by_alias = _by_alias(everything, classifier)

    rows = int(len(frame))
    judged = rows >= min_rows
    if not judged:
        notes.append(f"only {rows} rows (< min_rows {min_rows}): not judged")
    report = MonitorReport(
        model=version.model, alias=alias, version=version.version, window=window_text,
        rows=rows, labeled_rows=labeled,
        since=since if since is not None else float(frame["ts"].min()),
        until=float(frame["ts"].max()), threshold=limit,
        drifted=judged and score > limit, score=float(score), features=entries,
        prediction=prediction, performance=performance, by_alias=by_alias,
        reference={"uri": ref.uri, "fingerprint": ref.fingerprint, "rows": ref.rows},
        violations=violations, notes=notes, judged=judged, created_at=now,
    )
    if record:
        saved = store.monitoring.record(
            model=report.model, alias=alias, version=report.version, score=report.score,
            drifted=report.drifted, rows=rows, labeled_rows=labeled, source=source,
            window=window_text, threshold=limit, report=report.to_dict(), created_at=now)
        report.id = saved.id
    return report
