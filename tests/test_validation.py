"""Data validation: schema inference, checks, drift, the result object, recording in a real
SQLite store, and ``nbmlops validate`` as the installed script in a subprocess."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nbmlops
from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.pipeline.spec import VALIDATION_THRESHOLDS
from nbmlops.store import Store
from nbmlops.validation import DEFAULT_THRESHOLDS, Schema, infer_schema, validate
from nbmlops.validation.drift import psi

from ._scripts import nbmlops as run_cli
from ._scripts import one_line_error


def frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 90, n),
        "income": np.clip(rng.normal(50.0, 10.0, n), 10, 90),
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "member": rng.random(n) < 0.4,
    })


@pytest.fixture
def reference() -> pd.DataFrame:
    return frame(seed=1)


def table_counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        names = [r[0] for r in con.execute(
            "select name from sqlite_master where type='table' and name != 'alembic_version'")]
        return {n: con.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def checks(result: nbmlops.validation.ValidationResult) -> list[tuple[str, str]]:
    return [(v["column"], v["check"]) for v in result.violation_records]


# -- checks --------------------------------------------------------------------------------------


def test_same_distribution_passes(reference: pd.DataFrame) -> None:
    result = validate(frame(seed=2), against=reference, record=False)
    assert result.passed, str(result)
    assert result.violations.empty
    assert list(result.violations.columns) == ["column", "check", "expected", "observed"]
    assert result.summary["columns"]["income"]["psi"] < 0.05
    assert result.summary["drift_sample"] == 100_000


def test_missing_column_is_one_violation(reference: pd.DataFrame) -> None:
    result = validate(frame(seed=2).drop(columns=["city"]), against=reference, record=False)
    assert not result.passed
    assert checks(result) == [("city", "missing_column")]
    assert result.violation_records[0]["observed"] == "missing"


def test_wrong_dtype_is_one_violation(reference: pd.DataFrame) -> None:
    data = frame(seed=2).assign(age=lambda d: d.age.astype(str))
    result = validate(data, against=reference, record=False)
    assert checks(result) == [("age", "dtype")]
    v = result.violation_records[0]
    assert v["expected"] == "int64 (integer)" and "string" in v["observed"]


def test_all_nan_column_is_one_violation(reference: pd.DataFrame) -> None:
    data = frame(seed=2).assign(income=np.nan)
    result = validate(data, against=reference, record=False)
    assert checks(result) == [("income", "all_null")]
    assert result.violation_records[0]["observed"] == "all 4000 values null"
    as_object = validate(frame(seed=2).assign(age=None), against=reference, record=False)
    assert checks(as_object) == [("age", "all_null")]  # not a dtype change: it has no values


def test_nulls_range_categories_and_drift(reference: pd.DataFrame) -> None:
    data = frame(seed=2)
    data.loc[:9, "income"] = np.nan
    data.loc[10, "age"] = 400
    data.loc[data.index[-50:], "city"] = "oslo"
    data["income"] = data["income"] + 15  # a shifted distribution
    result = validate(data, against=reference, record=False)
    found = checks(result)
    assert ("income", "nullable") in found
    assert ("age", "range") in found
    assert ("city", "categories") in found
    assert ("income", "drift") in found
    city = next(v for v in result.violation_records if v["check"] == "categories")
    assert "50 values in 1 new categories: 'oslo'" == city["observed"]


def test_integers_with_a_missing_value_are_not_a_dtype_change(reference: pd.DataFrame) -> None:
    data = frame(seed=2).astype({"age": float})
    data.loc[0, "age"] = np.nan
    assert checks(validate(data, against=reference, record=False)) == [("age", "nullable")]


def test_thresholds_default_per_column_and_off(reference: pd.DataFrame) -> None:
    data = frame(seed=2).assign(income=lambda d: d.income + 6)
    assert ("income", "drift") in checks(validate(data, against=reference, record=False))
    loose = {"columns": {"income": {"psi": 5.0, "range_tolerance": 1.0}}}
    assert validate(data, against=reference, thresholds=loose, record=False).passed
    assert validate(data, against=reference, record=False,
                    thresholds={"psi": None, "range_tolerance": 1}).passed
    with pytest.raises(InvalidArgumentError, match="unknown threshold 'pis'"):
        validate(data, against=reference, thresholds={"pis": 1})
    with pytest.raises(InvalidArgumentError, match="psi must be a number >= 0"):
        validate(data, against=reference, thresholds={"psi": -1})


def test_chi_square_when_asked(reference: pd.DataFrame) -> None:
    rng = np.random.default_rng(5)
    data = frame(seed=2).assign(city=rng.choice(["paris", "lyon", "nice"], 4000,
                                                p=[0.5, 0.3, 0.2]))
    same = validate(frame(seed=2), against=reference, thresholds={"chi2_pvalue": 0.001},
                    record=False)
    assert same.passed and same.summary["columns"]["city"]["chi2"]["p_value"] > 0.001
    shifted = validate(data, against=reference, thresholds={"chi2_pvalue": 0.001, "psi": None},
                       record=False)
    assert [v["expected"] for v in shifted.violation_records] == ["chi-square p >= 0.001"]


def test_psi_of_identical_shares_is_zero() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.9, 0.1]) > 0.2


def test_extra_columns_only_when_strict(reference: pd.DataFrame) -> None:
    data = frame(seed=2).assign(extra=1)
    result = validate(data, against=reference, record=False)
    assert result.passed and result.summary["extra_columns"] == ["extra"]
    strict = validate(data, against=reference, record=False, allow_extra_columns=False)
    assert checks(strict) == [("extra", "unexpected_column")]


def test_thresholds_known_to_the_pipeline_schema() -> None:
    assert tuple(DEFAULT_THRESHOLDS) == VALIDATION_THRESHOLDS


# -- result rendering ----------------------------------------------------------------------------


def test_text_and_escaped_html(reference: pd.DataFrame) -> None:
    data = frame(seed=2)
    data.loc[0, "city"] = "<script>x</script>"
    result = validate(data, against=reference, record=False)
    text = str(result)
    assert text.startswith("validation of DataFrame 4000x4 against DataFrame 4000x4: FAILED: "
                           "1 violation")
    assert "  city    categories  " in text
    page = result._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<table>" in page


# -- references ----------------------------------------------------------------------------------


def test_saved_schema_round_trip(tmp_path: Path, reference: pd.DataFrame) -> None:
    path = infer_schema(reference).save(tmp_path / "schema.json")
    loaded = Schema.load(path)
    assert loaded.columns == infer_schema(reference).columns
    bad = frame(seed=2).drop(columns=["age"])
    assert checks(validate(bad, against=str(path), record=False)) == [("age", "missing_column")]
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(InvalidArgumentError, match="not an nbmlops schema"):
        validate(bad, against=tmp_path / "other.json", record=False)


def test_unknown_reference_path(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no reference file .*nope.csv"):
        validate(frame(), against=str(tmp_path / "nope.csv"))
    with pytest.raises(InvalidArgumentError, match="against= must be"):
        validate(frame(), against=42)


def test_parquet_and_csv_files(tmp_path: Path, reference: pd.DataFrame) -> None:
    reference.to_parquet(tmp_path / "ref.parquet")
    frame(seed=2).to_csv(tmp_path / "data.csv", index=False)
    result = validate(tmp_path / "data.csv", against=tmp_path / "ref.parquet", record=False)
    assert result.passed, str(result)
    assert result.data_fingerprint and result.data_fingerprint.startswith("sha256:")


# -- recording -----------------------------------------------------------------------------------


def test_recorded_with_schema_artifact_and_reference(tmp_path: Path, store: Store,
                                                     reference: pd.DataFrame) -> None:
    reference.to_csv(tmp_path / "ref.csv", index=False)
    data = frame(seed=2).drop(columns=["member"])
    data.to_csv(tmp_path / "data.csv", index=False)
    result = validate(tmp_path / "data.csv", against=tmp_path / "ref.csv", store=store)
    assert result.validation_id is not None
    row = store.validations.get(result.validation_id)
    assert not row.passed and row.rows == 4000 and row.run_id is None
    assert row.violations == result.violation_records
    ref_art = store.validations.artifact(row.reference_artifact_id or 0)
    assert ref_art.uri == str((tmp_path / "ref.csv").resolve()) and ref_art.kind == "dataset"
    schema_art = store.validations.artifact(row.schema_artifact_id or 0)
    assert schema_art.kind == "schema" and Path(schema_art.uri).is_file()
    assert schema_art.fingerprint.startswith("sha256:")
    assert Schema.load(schema_art.uri).columns == result.schema.columns
    assert [v.id for v in store.validations.for_artifact(ref_art.id)] == [row.id]
    # the stored schema and the recorded dataset work as references
    again = validate(data, against=f"artifact:{schema_art.id}", store=store, record=False)
    assert checks(again) == [("member", "missing_column")]
    by_dataset = validate(data, against=f"artifact:{ref_art.id}", store=store, record=False)
    assert checks(by_dataset) == [("member", "missing_column")]
    # the same schema is stored once (content-addressed)
    validate(tmp_path / "data.csv", against=tmp_path / "ref.csv", store=store)
    rows = store.validations.for_artifact(ref_art.id)
    assert len({r.schema_artifact_id for r in rows}) == 1


def test_artifact_reference_changed_on_disk_uses_nothing_stale(
        tmp_path: Path, store: Store, reference: pd.DataFrame) -> None:
    reference.to_csv(tmp_path / "ref.csv", index=False)
    first = validate(frame(seed=2), against=tmp_path / "ref.csv", store=store)
    art_id = store.validations.get(first.validation_id or 0).reference_artifact_id
    frame(seed=3).head(10).to_csv(tmp_path / "ref.csv", index=False)
    with pytest.raises(NotFoundError, match="changed since it was recorded"):
        validate(frame(seed=2), against=f"artifact:{art_id}", store=store)
    with pytest.raises(NotFoundError, match="no artifact 999"):
        validate(frame(seed=2), against="artifact:999", store=store)


def test_no_store_means_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     reference: pd.DataFrame) -> None:
    monkeypatch.chdir(tmp_path)
    result = validate(frame(seed=2), against=reference)
    assert result.recorded is None and result.validation_id is None
    assert "not recorded: no nbmlops store" in str(result)
    assert not (tmp_path / ".nbmlops").exists()


def test_import_nbmlops_stays_light() -> None:
    code = ("import sys, nbmlops\nnbmlops.validate\n"
            "print(','.join(m for m in ('scipy', 'pandera') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
    assert "validate" in nbmlops.__all__


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, reference: pd.DataFrame) -> Path:
    reference.to_csv(tmp_path / "ref.csv", index=False)
    frame(seed=2).to_csv(tmp_path / "good.csv", index=False)
    assert run_cli("init", cwd=tmp_path).returncode == 0
    return tmp_path


def test_cli_passes_and_records(project: Path) -> None:
    proc = run_cli("validate", "good.csv", "--against", "ref.csv", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("validation of good.csv against ref.csv: passed")
    assert "recorded: store (validation 1)" in proc.stdout
    counts = table_counts(project / ".nbmlops" / "nbmlops.db")
    assert counts["validations"] == 1 and counts["runs"] == 0


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d.drop(columns=["city"]), ("city", "missing_column")),
    (lambda d: d.assign(age="x"), ("age", "dtype")),
    (lambda d: d.assign(income=np.nan), ("income", "all_null")),
])
def test_cli_violations_exit_1(project: Path, mutate, expected) -> None:  # type: ignore[no-untyped-def]
    mutate(frame(seed=2)).to_csv(project / "bad.csv", index=False)
    proc = run_cli("validate", "bad.csv", "--against", "ref.csv", "--json", cwd=project)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    assert out["passed"] is False
    assert [(v["column"], v["check"]) for v in out["violations"]] == [expected]
    text = run_cli("validate", "bad.csv", "--against", "ref.csv", cwd=project)
    assert text.returncode == 1 and f"{expected[0]}" in text.stdout


def test_cli_bad_input_touches_nothing(project: Path) -> None:
    db = project / ".nbmlops" / "nbmlops.db"
    before = table_counts(db)
    missing = run_cli("validate", "good.csv", "--against", "nope.csv", cwd=project)
    assert missing.returncode == 4
    assert one_line_error(missing) == "Error: no reference file nope.csv"
    no_data = run_cli("validate", "gone.csv", "--against", "ref.csv", cwd=project)
    assert no_data.returncode == 4 and one_line_error(no_data) == "Error: no data file gone.csv"
    bad = run_cli("validate", "good.csv", "--against", "ref.csv", "--threshold", "psi=abc",
                  cwd=project)
    assert bad.returncode == 2
    assert one_line_error(bad) == "Error: --threshold 'psi=abc': 'abc' is not a number (or 'none')"
    unknown = run_cli("validate", "good.csv", "--against", "ref.csv", "--threshold",
                      "age.psy=1", cwd=project)
    assert unknown.returncode == 2 and "unknown threshold 'psy'" in one_line_error(unknown)
    no_ref = run_cli("validate", "good.csv", cwd=project)
    assert no_ref.returncode == 2 and "--against" in no_ref.stderr
    assert table_counts(db) == before


def test_cli_threshold_per_column(project: Path) -> None:
    frame(seed=2).assign(income=lambda d: d.income + 6).to_csv(project / "shift.csv", index=False)
    assert run_cli("validate", "shift.csv", "--against", "ref.csv", "--no-record",
                   cwd=project).returncode == 1
    proc = run_cli("validate", "shift.csv", "--against", "ref.csv", "--threshold",
                   "income.psi=none", "--threshold", "range_tolerance=1", "--no-record",
                   cwd=project)
    assert proc.returncode == 0, proc.stdout


def test_lineage_shows_what_a_dataset_was_validated_against(tmp_path: Path, store: Store,
                                                            reference: pd.DataFrame) -> None:
    infer_schema(reference).save(tmp_path / "contract.json")
    reference.to_csv(tmp_path / "good.csv", index=False)
    bad = reference.drop(columns=[reference.columns[0]])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    assert validate(tmp_path / "good.csv", against=tmp_path / "contract.json", store=store).passed
    assert not validate(tmp_path / "bad.csv", against=tmp_path / "contract.json",
                        store=store).passed
    good = store.lineage(str(tmp_path / "good.csv"))
    labels = {(e.source, e.label) for e in good.edges}
    contract = next(n for n in good.nodes if n.attrs.get("uri", "").endswith("contract.json"))
    assert (contract.id, "validated against") in labels
    failed = store.lineage(str(tmp_path / "bad.csv"))
    assert any(e.label == "validated against (failed)" for e in failed.edges)
    from nbmlops._format import lineage_tree

    assert "validated against (FAILED): contract.json" in lineage_tree(failed)


def test_a_small_batch_is_not_flagged_for_its_own_sampling_noise(reference: pd.DataFrame) -> None:
    # 45 rows of the same distribution: raw PSI over 10 bins is ~0.2-0.6 by chance alone
    small = [validate(frame(n=45, seed=s), against=reference, record=False) for s in range(20)]
    drifted = [c for r in small for c in checks(r) if c[1] == "drift"]
    assert len(drifted) <= 1, drifted  # at most a rare chance hit among 20 x 2 numeric columns
    stats = small[0].summary["columns"]["income"]
    assert stats["psi_noise"] > 0.2 and "psi" in stats
    # a real shift of the same small size is still drift
    shifted = frame(n=45, seed=3).assign(income=lambda d: d["income"] + 25)
    assert ("income", "drift") in checks(validate(shifted, against=reference, record=False))
