"""The artifact store through fsspec: the local directory layout (unchanged, byte for byte),
``memory://`` and a real S3-compatible server (moto's server mode on loopback, authentication
on: tests/_s3.py) used by the store, the registry, the pipeline runner and the CLI; and the bad
inputs (wrong credentials, a missing bucket, an unknown protocol) as one clear error each."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

from nbmlops.config import StoreLocation, cache_dir_for, resolve_location
from nbmlops.errors import NotFoundError, StoreError
from nbmlops.pipeline.load import load_pipeline
from nbmlops.pipeline.runner import PipelineRunner
from nbmlops.registry import list_models, load_model, register
from nbmlops.store import Store
from nbmlops.store.artifacts import ArtifactStore, sha256_file

from ._s3 import BUCKET, MotoS3, fresh_prefix, shared_server
from ._scripts import clean_env, one_line_error, script
from .conftest import make_notebook
from .test_store import sqlite_location


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def s3() -> MotoS3:
    try:
        return shared_server()
    except Exception as exc:  # noqa: BLE001 - moto[server] is in the test extra
        pytest.skip(f"moto_server not started: {exc}")


@pytest.fixture
def s3_url(s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NBMLOPS_CACHE_DIR", str(tmp_path / "cache"))
    return fresh_prefix()


@pytest.fixture
def s3_store(s3_url: str, tmp_path: Path) -> Iterator[Store]:
    loc = StoreLocation(url=f"sqlite:///{tmp_path / 'db' / 'nbmlops.db'}", artifact_root=s3_url)
    with Store(loc) as s:
        yield s


@pytest.fixture(scope="module")
def tree() -> DecisionTreeClassifier:
    X, y = load_iris(return_X_y=True, as_frame=True)
    return DecisionTreeClassifier(random_state=0, max_depth=2).fit(X, y)


# -- local directory: the layout of every earlier release -------------------------------------


def test_local_layout_is_unchanged_and_put_is_idempotent(tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n")
    d = digest_of(src.read_bytes())
    arts = ArtifactStore(tmp_path / "artifacts")
    digest, uri = arts.put(src)
    stored = tmp_path / "artifacts" / "sha256" / d[:2] / d
    assert (digest, uri) == (d, str(stored.resolve()))
    assert stored.read_bytes() == src.read_bytes()
    before = stored.stat()
    assert arts.put(src) == (d, uri)  # a second copy costs nothing: the file is not rewritten
    assert stored.stat().st_mtime_ns == before.st_mtime_ns and stored.stat().st_ino == before.st_ino
    assert [p.name for p in stored.parent.iterdir()] == [d]  # no temporary file left behind
    assert arts.exists(d) and not arts.exists("0" * 64)
    assert arts.get_local(d) == stored and arts.uri_for(d) == uri
    with arts.open(d) as fh:
        assert fh.read() == b"a,b\n1,2\n"
    with pytest.raises(NotFoundError, match="is not in"):
        arts.get_local("0" * 64)
    assert ArtifactStore(f"file://{tmp_path / 'artifacts'}").get_local(d) == stored
    assert not ArtifactStore(tmp_path / "artifacts").remote


def test_resolve_location_keeps_urls_and_local_defaults(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBMLOPS_ARTIFACT_URL", "s3://bucket/team/")
    loc = resolve_location("postgresql+psycopg://u:pw@db/x")
    assert loc.artifact_root == "s3://bucket/team" and loc.artifact_url == "s3://bucket/team"
    monkeypatch.setenv("NBMLOPS_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir_for("s3://bucket/team") == tmp_path / "c" / "artifacts"
    assert loc.runs_dir == tmp_path / "c" / "runs"  # a server store with remote artifacts
    monkeypatch.delenv("NBMLOPS_ARTIFACT_URL")
    local = resolve_location(None, None, tmp_path)
    assert local.artifact_root == tmp_path / ".nbmlops" / "artifacts"
    assert resolve_location(None, f"file://{tmp_path}/a").artifact_root == tmp_path / "a"


# -- memory:// (any fsspec filesystem) --------------------------------------------------------


def test_memory_filesystem_put_skips_existing_keys(tmp_path: Path) -> None:
    import fsspec

    src = tmp_path / "x.bin"
    src.write_bytes(b"payload")
    d = digest_of(b"payload")
    url = f"memory://nbmlops-{os.getpid()}/{tmp_path.name}"
    arts = ArtifactStore(url, cache_dir=tmp_path / "cache")
    assert arts.put(src) == (d, f"{url}/sha256/{d[:2]}/{d}")
    fs = fsspec.filesystem("memory")
    key = f"{url[len('memory://'):]}/sha256/{d[:2]}/{d}"
    assert fs.cat_file(key) == b"payload"
    fs.pipe_file(key, b"changed behind our back")
    arts.put(src)  # the key exists: nothing is written (idempotent, no second upload)
    assert fs.cat_file(key) == b"changed behind our back"
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(StoreError, match="sha256 mismatch"):  # a download is verified
        arts.get_local(d)
    assert not (tmp_path / "cache" / "sha256" / d[:2] / d).exists()
    fs.pipe_file(key, b"payload")
    assert arts.get_local(d).read_bytes() == b"payload"


# -- S3 (moto server on loopback) -------------------------------------------------------------


def test_store_log_artifact_goes_to_s3(s3: MotoS3, s3_store: Store, s3_url: str,
                                       tmp_path: Path) -> None:
    src = tmp_path / "metrics.json"
    src.write_text('{"acc": 0.9}')
    rid = s3_store.create_run(name="r")
    art = s3_store.log_artifact(rid, src)
    d = digest_of(src.read_bytes())
    prefix = s3_url.split(f"s3://{BUCKET}/", 1)[1]
    assert s3.keys(prefix=prefix) == [f"{prefix}/sha256/{d[:2]}/{d}"]
    assert art.stored_path == f"{s3_url}/sha256/{d[:2]}/{d}"
    assert s3_store.artifacts.exists(d) and s3_store.artifacts.uri_for(d) == art.stored_path
    s3_store.log_artifact(rid, src)  # the same content again: one object
    assert len(s3.keys(prefix=prefix)) == 1


def test_registry_versions_live_in_s3_and_load_through_the_cache(
        s3: MotoS3, s3_store: Store, s3_url: str, tmp_path: Path, tree: Any) -> None:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    v1 = register(s3_store, tree, "iris", alias="champion")
    joblib.dump(tree, tmp_path / "tree.joblib")
    v2 = register(s3_store, tmp_path / "tree.joblib", "iris")
    for v in (v1, v2):
        assert v.stored_path == f"{s3_url}/sha256/{v.digest[:2]}/{v.digest}"
        assert s3_store.artifacts.exists(v.digest)
    shutil.rmtree(tmp_path / "cache")  # another machine: nothing cached yet
    model = load_model("models:/iris@champion", store=s3_store)
    assert (model.predict(X) == tree.predict(X)).all()
    cached = s3_store.artifacts.path_for(v1.digest)
    assert cached.is_file() and sha256_file(cached) == v1.digest
    # a changed object in the bucket is refused on download, and nothing is loaded
    shutil.rmtree(tmp_path / "cache")
    key = s3_url.split(f"s3://{BUCKET}/", 1)[1] + f"/sha256/{v2.digest[:2]}/{v2.digest}"
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=b"not the model")
    with pytest.raises(StoreError, match="sha256 mismatch"):
        load_model("models:/iris/2", store=s3_store)
    assert not s3_store.artifacts.path_for(v2.digest).exists()


@pytest.mark.kernel
def test_pipeline_outputs_are_put_into_the_artifact_store(
        s3: MotoS3, s3_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    make_notebook(root / "make.ipynb", [
        "from pathlib import Path\nPath('out.txt').write_text('forty-two')"])
    (root / "pipeline.yaml").write_text(
        "name: p\nsteps:\n  make:\n    notebook: make.ipynb\n    outputs: [out.txt]\n")
    url = f"sqlite:///{tmp_path / 'db' / 'nbmlops.db'}"
    monkeypatch.setenv("NBMLOPS_ARTIFACT_URL", s3_url)
    runner = PipelineRunner(load_pipeline(root / "pipeline.yaml"), store_url=url)
    try:
        result = runner.run()
    finally:
        runner.close()
    assert result.status == "finished", result
    d = digest_of(b"forty-two")
    prefix = s3_url.split(f"s3://{BUCKET}/", 1)[1]
    assert f"{prefix}/sha256/{d[:2]}/{d}" in s3.keys(prefix=prefix)
    with Store.open(url, s3_url) as s:
        stored = {a.stored_path for a in s.find_artifacts(str((root / "out.txt").resolve()))}
    assert f"{s3_url}/sha256/{d[:2]}/{d}" in stored


# -- bad input: one clear error line, exit code 3, no secret, nothing touched ----------------


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("nbmlops"), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env=clean_env(**env))


@pytest.fixture
def project(tmp_path: Path, tree: Any) -> Path:
    joblib.dump(tree, tmp_path / "tree.joblib")
    with Store(sqlite_location(tmp_path)):
        pass
    return tmp_path


def no_models(project: Path) -> None:
    with Store(sqlite_location(project)) as s:
        assert list_models(s) == []


def test_wrong_credentials_one_error_naming_bucket_and_url_never_the_secret(
        s3: MotoS3, project: Path) -> None:
    url = fresh_prefix()
    wrong = "wR0ngS3cretValue/doNotPrint+1234567890abcdef"
    proc = cli(project, "models", "register", "tree.joblib", "--name", "iris",
               NBMLOPS_ARTIFACT_URL=url, AWS_SECRET_ACCESS_KEY=wrong)
    assert proc.returncode == 3, proc.stderr
    line = one_line_error(proc)
    assert url in line and f"bucket {BUCKET!r}" in line and "access denied" in line, line
    assert wrong not in proc.stderr + proc.stdout and s3.secret not in proc.stderr
    no_models(project)
    assert s3.keys(prefix=url.rsplit("/", 1)[1]) == []
    # the right secret: registered, one object in the bucket
    ok = cli(project, "models", "register", "tree.joblib", "--name", "iris", "--json",
             NBMLOPS_ARTIFACT_URL=url)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stored_path"].startswith(url + "/sha256/")


def test_missing_bucket_is_one_error(s3: MotoS3, project: Path) -> None:
    url = "s3://no-such-bucket-here/team"
    proc = cli(project, "models", "register", "tree.joblib", "--name", "iris",
               NBMLOPS_ARTIFACT_URL=url)
    assert proc.returncode == 3, proc.stderr
    line = one_line_error(proc)
    assert url in line and "'no-such-bucket-here'" in line and "does not exist" in line, line
    no_models(project)


@pytest.mark.parametrize(("url", "needle"), [
    ("foo://bucket/x", "unknown protocol foo://"),
    ("gcs://bucket/x", "pip install gcsfs"),
])
def test_unknown_or_uninstalled_protocol_names_the_package(project: Path, url: str,
                                                           needle: str) -> None:
    proc = cli(project, "models", "register", "tree.joblib", "--name", "iris",
               NBMLOPS_ARTIFACT_URL=url)
    assert proc.returncode == 3, proc.stderr
    line = one_line_error(proc)
    assert url in line and needle in line, line
    no_models(project)


def test_endpoint_through_fsspec_config_variable(s3: MotoS3, tmp_path: Path) -> None:
    """FSSPEC_S3_ENDPOINT_URL (fsspec's own configuration) works as well as AWS_ENDPOINT_URL."""
    src = tmp_path / "f.txt"
    src.write_text("via fsspec config")
    url = fresh_prefix()
    code = ("import sys; from nbmlops.store.artifacts import ArtifactStore; "
            "print(ArtifactStore(sys.argv[1]).put(sys.argv[2])[1])")
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env.update(FSSPEC_S3_ENDPOINT_URL=s3.endpoint, NBMLOPS_CACHE_DIR=str(tmp_path / "c"))
    proc = subprocess.run([str(Path(script("nbmlops")).with_name("python")), "-c", code, url,
                           str(src)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(url + "/sha256/")
