"""The promotion gate and model cards, on a real SQLite store with real scikit-learn models."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_wine
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from nbmlops.errors import InvalidArgumentError, NotFoundError
from nbmlops.registry import service
from nbmlops.registry.card import build_card, render_html, render_markdown
from nbmlops.registry.gate import gate, parse_rule
from nbmlops.store import Store

from ._scripts import nbmlops, one_line_error


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    wine = load_wine(as_frame=True).frame
    train, test = train_test_split(wine, test_size=0.3, random_state=0, stratify=wine["target"])
    X, y = train.drop(columns=["target"]), train["target"]
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    weak = DummyClassifier(strategy="most_frequent").fit(X, y)
    return {"train": train, "test": test, "good": good, "weak": weak}


def _versions(store: Store, name: str) -> int:
    try:
        return len(service.list_versions(store, name))
    except NotFoundError:
        return 0


def test_first_candidate_is_promoted_a_worse_one_rejected(store: Store, data: dict[str, Any]) -> None:
    first = gate(data["good"], name="wine", metric="f1_macro", data=data["test"],
                 target="target", min=0.8, store=store)
    assert first.promoted and first.candidate_version == 1 and first.champion_version is None
    assert service.resolve_model_uri(store, "models:/wine@champion").version == 1

    worse = gate(data["weak"], name="wine", metric="f1_macro", data=data["test"],
                 target="target", must_beat="champion", by=0.01, store=store)
    assert not worse.promoted
    assert worse.candidate_version == 2 and worse.champion_version == 1
    assert worse.candidate_score < worse.champion_score  # type: ignore[operator]
    assert any("min" not in r and "not better" in r for r in worse.reasons)
    # registered without the alias; the champion did not move
    assert service.resolve_model_uri(store, "models:/wine@champion").version == 1
    assert "champion" not in service.get_version(store, "wine", 2).aliases

    events = service.model_history(store, "wine")
    gates = [e for e in events if e.kind == "gate"]
    assert [g.details["decision"] for g in gates] == ["promoted", "rejected"]
    rejected = gates[1].details
    assert rejected["candidate"]["version"] == 2 and rejected["champion"]["version"] == 1
    assert rejected["data_fingerprint"] == first.data_fingerprint  # same held-out rows
    assert rejected["rule"]["by"] == 0.01 and rejected["rows"] == len(data["test"])
    assert [e.kind for e in events].count("promote") == 1


def test_a_better_candidate_must_beat_by_the_margin(store: Store, data: dict[str, Any]) -> None:
    gate(data["weak"], name="m", metric="accuracy", data=data["test"], target="target",
         store=store)
    same = gate(data["weak"], name="m", metric="accuracy", data=data["test"], target="target",
                store=store)
    assert not same.promoted  # equal is not better (by 0 means strictly better)
    better = gate(data["good"], name="m", metric="accuracy", data=data["test"],
                  target="target", by=0.05, store=store)
    assert better.promoted
    assert service.resolve_model_uri(store, "models:/m@champion").version == better.candidate_version
    too_much = gate(data["good"], name="m", metric="accuracy", data=data["test"],
                    target="target", by=0.5, store=store)
    assert not too_much.promoted


def test_a_loss_is_lower_is_better_with_max(store: Store, data: dict[str, Any]) -> None:
    X, y = data["test"].drop(columns=["target"]), data["test"]["target"]
    ok = gate(data["good"], name="loss", metric="log_loss", X=X, y=y, max=0.5, store=store)
    assert ok.promoted and ok.lower_is_better and ok.candidate_score < 0.5
    bad = gate(data["weak"], name="loss", metric="log_loss", X=X, y=y, max=0.5, store=store)
    assert not bad.promoted
    assert any("> max" in r for r in bad.reasons)


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "f1_macor"}, r"metric 'f1_macor' is not computed by the gate \(did you mean 'f1_macro'\?\)"),
    ({"metric": "roc_auc_ovr", "model": "no_proba"}, r"could not be computed"),
    ({"metric": "f1_macro", "target": "label"}, r"target column 'label' is not in the held-out data"),
    ({"metric": "f1_macro", "by": -1}, r"by must be >= 0"),
])
def test_bad_rules_register_nothing(store: Store, data: dict[str, Any], kwargs: dict[str, Any],
                                    message: str) -> None:
    gate(data["weak"], name="wine", metric="accuracy", data=data["test"], target="target",
         store=store)
    before = (_versions(store, "wine"), len(service.model_history(store, "wine")))
    model = data["good"]
    if kwargs.pop("model", None) == "no_proba":
        from sklearn.svm import LinearSVC

        train = data["train"]
        model = LinearSVC().fit(train.drop(columns=["target"]), train["target"])
    args = {"data": data["test"], "target": "target", **kwargs}
    with pytest.raises(InvalidArgumentError, match=message):
        gate(model, name="wine", store=store, **args)
    assert (_versions(store, "wine"), len(service.model_history(store, "wine"))) == before


def test_parse_rule_refuses_unknown_keys() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown rule key 'must_bet'"):
        parse_rule({"metric": "f1_macro", "must_bet": "champion"})
    assert parse_rule({"metric": "rmse", "max": 3}).max == 3.0


def test_card_from_lineage_md_html_and_cli(store: Store, data: dict[str, Any],
                                          tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(data["good"], path)
    gate(str(path), name="wine", metric="f1_macro", data=data["test"], target="target",
         store=store, reason="first <img src=x onerror=alert(1)> model")
    service.record_event(store, "wine", "gate", details={"decision": "rejected", "rule":
                         {"metric": "<script>x</script>"}, "candidate": {"version": 1}})
    card = build_card(store, "wine@champion")
    assert card["model"]["version"] == 1 and card["model"]["aliases"] == ["champion"]
    assert card["gates"][0]["details"]["decision"] == "promoted"
    assert card["validation_data"][0]["rows"] == len(data["test"])
    assert card["alias_history"][0]["kind"] == "promote"

    md = render_markdown(card)
    for section in ("## Model", "## Data it was built from", "## Gate decisions", "## Alias history",
                    "## Environment", "## Cells that built it"):
        assert section in md
    assert card["model"]["digest"] in md

    html = render_html(card)
    assert "<img" not in html and "<script>x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", html)  # self-contained

    store_dir = Path(store.location.artifact_root).parent
    out = tmp_path / "card.html"
    proc = nbmlops("--store", store.url, "card", "wine@champion", "-o", str(out), cwd=store_dir)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<!DOCTYPE html>")
    missing = nbmlops("--store", store.url, "card", "wine@nope", cwd=store_dir)
    assert missing.returncode == 4
    assert "nope" in one_line_error(missing)
    bare = nbmlops("--store", store.url, "card", "wine", cwd=store_dir)
    assert bare.returncode == 2 and "NAME@ALIAS" in one_line_error(bare)


def test_gate_reads_held_out_data_from_a_file(store: Store, data: dict[str, Any],
                                              tmp_path: Path) -> None:
    test_file = tmp_path / "test.parquet"
    data["test"].to_parquet(test_file, index=False)
    decision = gate(data["good"], name="f", metric="f1_macro", data=test_file, target="target",
                    store=store)
    frame = gate(data["good"], name="g", metric="f1_macro",
                 data=pd.read_parquet(test_file), target="target", store=store)
    assert decision.data_fingerprint == frame.data_fingerprint
    with pytest.raises(NotFoundError, match="no held-out data file"):
        gate(data["good"], name="f", metric="f1_macro", data=tmp_path / "gone.parquet",
             target="target", store=store)


def test_the_same_model_file_is_not_registered_twice(store: Store, data: dict[str, Any],
                                                     tmp_path: Path) -> None:
    path = tmp_path / "best.joblib"
    joblib.dump(data["good"], path)
    first = gate(str(path), name="same", metric="f1_macro", data=data["test"], target="target",
                 store=store)
    again = gate(str(path), name="same", metric="f1_macro", data=data["test"], target="target",
                 store=store)
    assert first.promoted and not again.promoted
    assert again.candidate_version == first.candidate_version == 1
    assert _versions(store, "same") == 1
    assert again.reasons == ["v1 already holds champion"]


def test_a_conditional_promotion_refuses_an_alias_that_moved(store: Store,
                                                             data: dict[str, Any]) -> None:
    from nbmlops.store.registry import AliasError

    gate(data["weak"], name="race", metric="accuracy", data=data["test"], target="target",
         store=store)  # v1 champion
    v2 = service.register(store, data["good"], "race")
    v3 = service.register(store, data["good"], "race")
    service.promote(store, "race", v2.version)  # someone moved it meanwhile
    events = len(service.model_history(store, "race"))
    with pytest.raises(AliasError, match="race@champion moved to version 2 .expected version 1."):
        service.promote(store, "race", v3.version, expect=1)
    with pytest.raises(AliasError, match="race@challenger moved to nothing .expected version 2."):
        service.promote(store, "race", v3.version, alias="challenger", expect=2)
    assert service.resolve_model_uri(store, "models:/race@champion").version == 2
    assert len(service.model_history(store, "race")) == events  # nothing changed
    assert service.promote(store, "race", v3.version, expect=2) is not None
