"""``nbmlops.validate``: resolve the data and the reference, check, record.

Every face calls :func:`validate`: notebook code, ``nbmlops validate`` and the pipeline runner.
Where it is recorded:

* inside a captured notebook (interactive or headless kernel): queued through the capture
  session, written after the executing cell's record and linked to the run and the cell;
* elsewhere: through ``store`` when given, else the project's store when one exists; with no
  store at all nothing is recorded (``result.recorded`` is None and a note says so).
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError, NotFoundError
from ..fingerprint import fingerprint_file, fingerprint_frame
from ..store.entities import ArtifactIO
from .result import ValidationResult
from .schema import Schema, Thresholds, check_frame, infer_schema

if TYPE_CHECKING:
    import pandas as pd

    from ..store import Store

__all__ = ["validate", "load_dataset", "resolve_reference", "Reference", "DATA_SUFFIXES"]

#: file suffix -> pandas reader name
DATA_SUFFIXES = {".csv": "read_csv", ".tsv": "read_csv", ".parquet": "read_parquet",
                 ".pq": "read_parquet", ".feather": "read_feather"}


@dataclass
class Reference:
    schema: Schema
    label: str
    #: the reference dataset as an artifact version (a file), if it is one
    io: ArtifactIO | None = None
    #: False when the schema came ready-made (a saved schema file or schema artifact)
    inferred: bool = True


def load_dataset(path: str | os.PathLike[str], *, what: str = "data") -> pd.DataFrame:
    """Read a csv/tsv/parquet/feather file. Missing file: :class:`NotFoundError`."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"no {what} file {p}")
    if p.is_dir():
        raise InvalidArgumentError(f"{what} {p} is a directory, not a data file")
    reader = DATA_SUFFIXES.get(p.suffix.lower())
    if reader is None:
        raise InvalidArgumentError(
            f"{what} {p}: unsupported file type {p.suffix or '(none)'!r} "
            f"(supported: {', '.join(sorted(DATA_SUFFIXES))}; a saved schema is .json)")
    kwargs = {"sep": "\t"} if p.suffix.lower() == ".tsv" else {}
    try:
        frame: pd.DataFrame = getattr(pd, reader)(p, **kwargs)
    except ImportError as exc:
        raise InvalidArgumentError(f"{what} {p}: cannot read it here: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a parser error of whatever library
        raise InvalidArgumentError(
            f"{what} {p}: cannot read it as {p.suffix[1:]}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return frame


def _file_io(path: Path, direction: str = "read", kind: str = "dataset") -> ArtifactIO:
    fp = fingerprint_file(path)
    return ArtifactIO(uri=str(path.resolve()), direction=direction, via="validate",
                      kind=kind, fingerprint=fp[0] if fp else "", size=fp[1] if fp else None)


def _is_schema_file(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def resolve_reference(against: Any, *, store: Store | None = None) -> Reference:
    """A DataFrame, :class:`Schema`, a dataset or schema file path, or ``artifact:ID``."""
    import pandas as pd

    if isinstance(against, Schema):
        return Reference(against, "schema", inferred=False)
    if isinstance(against, pd.DataFrame):
        return Reference(infer_schema(against), f"DataFrame {against.shape[0]}x{against.shape[1]}")
    if not isinstance(against, str | os.PathLike):
        raise InvalidArgumentError(
            f"against= must be a DataFrame, a path, 'artifact:ID' or a Schema, "
            f"not {type(against).__name__}")
    text = os.fspath(against)
    kind, _, rest = text.partition(":")
    if kind == "artifact" and rest:
        return _artifact_reference(text, rest, store)
    path = Path(text)
    if not path.exists():
        raise NotFoundError(f"no reference file {path}")
    if _is_schema_file(path):
        schema = Schema.load(path)
        # the saved schema file is the reference: linked like a dataset reference, so lineage
        # shows what the data was validated against
        return Reference(schema, str(path), _file_io(path, kind="schema"), inferred=False)
    frame = load_dataset(path, what="reference")
    io = _file_io(path)
    return Reference(infer_schema(frame, source={"uri": io.uri, "fingerprint": io.fingerprint}),
                     str(path), io)


def _artifact_reference(text: str, rest: str, store: Store | None) -> Reference:
    if not rest.isdigit():
        raise InvalidArgumentError(f"{text}: expected artifact:ID with a number")
    if store is None:
        store = _existing_store()
        if store is None:
            raise NotFoundError(f"{text}: no nbmlops store here to look it up in")
    art = store.validations.artifact(int(rest))
    if art.kind == "schema" or art.uri.lower().endswith(".json"):
        for p in (Path(art.uri), store.artifacts.local_copy(art.stored_path)):
            if p is not None and p.is_file():
                return Reference(Schema.load(p), text, inferred=False)
        raise NotFoundError(f"{text}: the schema file {art.uri} is gone")
    io = ArtifactIO(uri=art.uri, direction="read", via="validate", kind="dataset",
                    fingerprint=art.fingerprint, size=art.size)
    source = None
    fp = fingerprint_file(art.uri)
    if fp is not None and fp[0] == art.fingerprint:
        source = art.uri
    else:
        copy = store.artifacts.local_copy(art.stored_path)  # the stored copy: the recorded bytes
        source = str(copy) if copy is not None else None
    if source is None:
        why = "changed since it was recorded" if fp is not None else "is gone"
        raise NotFoundError(f"{text}: {art.uri} {why} and the store keeps no copy of it")
    suffix = Path(art.uri).suffix
    frame = _load_as(source, suffix)
    schema = infer_schema(frame, source={"uri": art.uri, "fingerprint": art.fingerprint,
                                         "artifact": art.id})
    return Reference(schema, f"{text} ({art.uri})", io)


def _load_as(path: str, suffix: str) -> pd.DataFrame:
    """A stored copy has no suffix of its own: read it as the original file's type."""
    if Path(path).suffix.lower() == suffix.lower():
        return load_dataset(path, what="reference")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / f"reference{suffix}"
        os.symlink(os.path.abspath(path), link)
        return load_dataset(link, what="reference")


def _existing_store() -> Store | None:
    """The project's store if there is one; never creates one."""
    from ..config import resolve_location
    from ..store import Store

    loc = resolve_location()
    db = loc.sqlite_path
    if db is not None and not db.exists():
        return None
    return Store(loc)


def validate(
    data: Any,
    against: Any,
    *,
    thresholds: Mapping[str, Any] | None = None,
    allow_extra_columns: bool = True,
    record: bool = True,
    store: Store | None = None,
    label: str | None = None,
    run_id: str | None = None,
) -> ValidationResult:
    """Validate ``data`` (a DataFrame or a dataset file) against ``against`` (a DataFrame, a
    dataset file, ``artifact:ID`` of a recorded dataset or schema, a saved schema file or a
    :class:`Schema`).

    Checks: every reference column present with a compatible dtype; no nulls where the reference
    had none (and not much more null where it had some); no all-null column; numbers within
    the reference's range widened by ``range_tolerance``; no new categories; drift (PSI, and
    chi-square when ``chi2_pvalue`` is set) within thresholds. ``thresholds`` overrides the
    defaults (:data:`~nbmlops.validation.schema.DEFAULT_THRESHOLDS`) for every column and per
    column: ``{"psi": 0.3, "columns": {"age": {"psi": 0.5}}}``.

    Bad arguments raise :class:`~nbmlops.errors.InvalidArgumentError`; a missing reference
    :class:`~nbmlops.errors.NotFoundError`. Violations do not raise: see ``result.passed``.
    """
    import pandas as pd

    th = Thresholds(thresholds)
    data_io: ArtifactIO | None = None
    if isinstance(data, pd.DataFrame):
        frame = data
        data_label = label or f"DataFrame {data.shape[0]}x{data.shape[1]}"
        data_fp: str | None = fingerprint_frame(frame)
    elif isinstance(data, str | os.PathLike):
        path = Path(os.fspath(data))
        frame = load_dataset(path)
        data_io = _file_io(path)
        data_label = label or str(path)
        data_fp = data_io.fingerprint or None
    else:
        raise InvalidArgumentError(
            f"data must be a DataFrame or a path to a data file, not {type(data).__name__}")
    opened: Store | None = None
    try:
        if store is None and isinstance(against, str) and against.startswith("artifact:"):
            opened = store = _existing_store()
        ref = resolve_reference(against, store=store)
        violations, summary = check_frame(frame, ref.schema, th,
                                          allow_extra_columns=allow_extra_columns)
        result = ValidationResult(
            passed=not violations, data_label=data_label, reference_label=ref.label,
            rows=len(frame), violation_records=violations, summary=summary, schema=ref.schema,
            data_fingerprint=data_fp,
        )
        if record:
            _record(result, ref, data_io, store, run_id)
        return result
    finally:
        if opened is not None:
            opened.close()


def _record(result: ValidationResult, ref: Reference, data_io: ArtifactIO | None,
            store: Store | None, run_id: str | None) -> None:
    from ..capture.session import active_session
    from ..capture.writer import RecordValidation, record_validation

    op = RecordValidation(
        run_id=run_id, cell_seq=None, key=uuid.uuid4().hex, passed=result.passed,
        data_label=result.data_label, reference_label=result.reference_label,
        violations=result.violation_records, summary=result.summary, rows=result.rows,
        data_fingerprint=result.data_fingerprint,
        dataset=dataclasses.asdict(data_io) if data_io else None,
        reference=dataclasses.asdict(ref.io) if ref.io else None,
        # a ready-made schema is already stored (or a user's file): only inferred ones are kept
        schema_json=ref.schema.to_json() if ref.inferred else None,
    )
    session = active_session() if store is None and run_id is None else None
    if session is not None and session.run_id is not None:
        result.recorded = session.record_validation(op)
        return
    own = None
    if store is None:
        own = store = _existing_store()
    if store is None:
        result.notes.append("not recorded: no nbmlops store here (run `nbmlops init` to keep "
                            "validations)")
        return
    try:
        row = record_validation(store, op)
    finally:
        if own is not None:
            own.close()
    if row is not None:
        result.validation_id = row.id
        result.recorded = f"store (validation {row.id})" if run_id is None else \
            f"run {run_id[:8]} (validation {row.id})"
