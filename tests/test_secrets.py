"""Secrets written in cell sources (issue 14): detected and redacted before anything is stored
(store database, crash journal, exports, reproductions), warned about once, with caching and
staleness still keyed by the code that ran. Real kernels (``nbmlops run``, pipelines), a real
SQLite store in tmp_path, a real in-process IPython shell for the journal."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell

from nbmlops.capture.session import active_session
from nbmlops.pipeline.load import load_pipeline
from nbmlops.pipeline.runner import PipelineRunner
from nbmlops.redact import environment_advice, redact_cell, redact_source, secrets_in
from nbmlops.slicing import export_notebook
from nbmlops.store import CellRecord, Store

from ._scripts import nbmlops
from .conftest import make_notebook
from .test_capture_shell import (
    LOCKER,
    shell,  # noqa: F401 - the same in-process shell fixture
)

# -- the detector --------------------------------------------------------------------------------

GH = "ghp_" + "Ab1" * 12
JWT = ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nq8Zz\n-----END RSA PRIVATE KEY-----"

#: (source, the secret in it, expected redacted source, findings)
DETECTED = [
    ("API_TOKEN = 'tok-abcdef123456'", "tok-abcdef123456",
     "API_TOKEN = '<redacted:API_TOKEN>'", ["API_TOKEN"]),
    ("os.environ['DB_PASSWORD'] = 'hunter2hunter2'", "hunter2hunter2",
     "os.environ['DB_PASSWORD'] = '<redacted:DB_PASSWORD>'", ["DB_PASSWORD"]),
    ('os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG")', "wJalrXUtnFEMI",
     'os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "<redacted:AWS_SECRET_ACCESS_KEY>")',
     ["AWS_SECRET_ACCESS_KEY"]),
    ("os.putenv('MY_SECRET', 'zzzz1234')", "zzzz1234",
     "os.putenv('MY_SECRET', '<redacted:MY_SECRET>')", ["MY_SECRET"]),
    ("engine = create_engine('postgresql://app:s3cr3tpw@db.example.com:5432/prod')", "s3cr3tpw",
     "engine = create_engine('postgresql://app:<redacted:url-password>@db.example.com:5432/prod')",
     ["url-password"]),
    ("key_id = 'AKIAIOSFODNN7EXAMPLE'", "AKIAIOSFODNN7EXAMPLE",
     "key_id = '<redacted:aws-access-key>'", ["aws-access-key"]),
    (f"gh = '{GH}'", GH, "gh = '<redacted:github-token>'", ["github-token"]),
    ("pat = 'github_pat_11ABCDEFG0abcdefghijklmnopqrstuv'", "github_pat_11ABCDEFG0",
     "pat = '<redacted:github-token>'", ["github-token"]),
    ("hook = 'xoxb-123456789012-abcdefghij'", "xoxb-123456789012",
     "hook = '<redacted:slack-token>'", ["slack-token"]),
    ("client = OpenAI(api_key='sk-proj-abc123DEF456ghi789JKL0')", "sk-proj-abc123",
     "client = OpenAI(api_key='<redacted:api_key>')", ["api_key"]),
    ("print('sk-abc123DEF456ghi789JKL0mno')", "sk-abc123DEF456",
     "print('<redacted:openai-key>')", ["openai-key"]),
    ("g = 'AIzaSyA1234567890abcdefghijklmnopqrstuv'", "AIzaSyA1234567890",
     "g = '<redacted:google-api-key>'", ["google-api-key"]),
    (f"headers = {{'X-Auth': 'Bearer {JWT}'}}", JWT,
     "headers = {'X-Auth': 'Bearer <redacted:jwt>'}", ["jwt"]),
    (f'pem = """{PEM}"""', "MIIEowIBAAKCAQEA7", 'pem = """<redacted:private-key>"""', ["private-key"]),
    ("%env HF_TOKEN=hf_abcdefgh12345", "hf_abcdefgh12345", "%env HF_TOKEN=<redacted:HF_TOKEN>",
     ["HF_TOKEN"]),
    ("conn = psycopg2.connect(host='h', password='pa55word!')", "pa55word!",
     "conn = psycopg2.connect(host='h', password='<redacted:password>')", ["password"]),
    ("cfg = {'password': 'pa55word!', 'user': 'bob'}", "pa55word!",
     "cfg = {'password': '<redacted:password>', 'user': 'bob'}", ["password"]),
    ("API_KEY: str = 'abcd-1234-efgh'", "abcd-1234-efgh", "API_KEY: str = '<redacted:API_KEY>'",
     ["API_KEY"]),
    ("self.client_secret = r'abcd1234'", "abcd1234", "self.client_secret = r'<redacted:client_secret>'",
     ["client_secret"]),
]


@pytest.mark.parametrize(("source", "secret", "expected", "findings"), DETECTED,
                         ids=[f[0] for f in (d[3] for d in DETECTED)])
def test_detects_and_redacts(source: str, secret: str, expected: str, findings: list[str]) -> None:
    redacted, found = redact_source(source)
    assert redacted == expected
    assert found == findings
    assert secret not in redacted and all(secret not in f for f in found)
    assert redact_source(redacted) == (redacted, [])  # a marker is never redacted again
    if not source.startswith("%"):
        ast.parse(redacted)  # still valid Python: the marker sits inside the literal's quotes


FALSE_POSITIVES = [
    "password_length = 12",
    "token_count = len(tokens)",
    "tokenizer = AutoTokenizer.from_pretrained('bert-base-uncased')",
    "home = os.environ['HOME']\nos.environ['HOME']",
    "os.environ['CUDA_VISIBLE_DEVICES'] = '0,1'",
    "tokenizer.pad_token = tokenizer.eos_token\npad_token = '<pad>'\neos_token = '</s>'",
    "special_tokens = {'sep_token': '[SEP]', 'cls_token': '[CLS]'}\nmax_tokens = 512",
    "token_type = 'bearer_style'\ntoken_pattern = r'(?u)\\b\\w\\w+\\b'",
    "from sklearn.ensemble import RandomForestClassifier\n"
    "clf = RandomForestClassifier(n_estimators=100, random_state=0)\nclf.fit(X_train, y_train)",
    "X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)",
    "param_grid = {'C': [0.1, 1, 10], 'kernel': ['rbf', 'linear']}\n"
    "search = GridSearchCV(SVC(), param_grid, scoring='f1_macro', cv=5)",
    "df = df.sort_values(key=lambda s: s.str.lower())\nsort_key = 'date'\nprimary_key = 'customer_id'",
    "author = 'Jane Doe'\nkeys = list(d.keys())\nsession = requests.Session()",
    "df = pd.read_csv('https://example.com/data.csv')\nrepo = 'https://user@example.com/r.git'",
    "password = os.environ['DB_PASSWORD']\napi_key = os.getenv('OPENAI_API_KEY')",
    "password = getpass.getpass()\nif password == 'letmein1': print('weak')",
    "n_passes = 3\nbypass = 'yes please'\nmodel.fit(X, y)  # passes=3",
    "task = 'risk-assessment-model-v2-training-run'\nmask = 'mask-rcnn_resnet50_fpn_coco-bf2d0c1e'",
    "password = ''\nPASSWORD = '********'\nAPI_TOKEN = '<your token here>'",
    "secret_name = f'{prefix}-db'\nconn_str = f'postgresql://{user}:{pw}@{host}/db'",
    "engine = create_engine('postgresql://user:${DB_PASSWORD}@host/db')",
    "vectorizer = TfidfVectorizer(token_pattern=r'(?u)\\b\\w\\w+\\b', max_features=5000)",
    "import matplotlib.pyplot as plt\nplt.plot(history.history['loss'])\nplt.show()",
]


@pytest.mark.parametrize("source", FALSE_POSITIVES)
def test_ordinary_ml_code_is_left_alone(source: str) -> None:
    assert redact_source(source) == (source, [])
    assert redact_cell(source) == (source, None, [])


def test_redact_cell_hashes_the_original_and_finds_markers_again() -> None:
    src = "import os\nAPI_TOKEN = 'tok-abcdef123456'\nurl = 'mysql://u:pw12345@h/db'"
    redacted, digest, findings = redact_cell(src)
    assert digest == hashlib.sha256(src.encode()).hexdigest()
    assert findings == ["API_TOKEN", "url-password"]
    assert secrets_in(redacted) == ["API_TOKEN", "url"]  # a URL's password: the variable holding it
    assert environment_advice(["api_key"]) == (
        "api_key must come from the environment (set API_KEY; read os.environ['API_KEY'])")


def test_pre_check_is_cheap() -> None:
    """The figure is in the report; this only catches a pre-check gone quadratic or a clean cell
    sent through the full pass."""
    clean = "\n".join(f"feature_{i} = df['col_{i}'].fillna(0).astype(float) * {i}" for i in range(20))
    assert redact_source(clean) == (clean, [])
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        redact_source(clean)
    assert (time.perf_counter() - started) / n < 0.002


def test_store_keys_a_redacted_cell_by_its_original_hash(store: Store) -> None:
    run_id = store.create_run(name="r")
    original = "API_TOKEN = 'tok-abcdef123456'"
    redacted, digest, _ = redact_cell(original)
    store.record_cells(run_id, [
        CellRecord(seq=0, source=redacted, source_hash=digest, start_time=1.0, duration=0.1, status="ok"),
        CellRecord(seq=1, source="x = 1", start_time=2.0, duration=0.1, status="ok"),
    ])
    cells = store.cell_executions(run_id)
    assert [(c.source, c.source_hash) for c in cells] == [
        (redacted, digest), ("x = 1", hashlib.sha256(b"x = 1").hexdigest())]


# -- no secret anywhere nbmlops writes -----------------------------------------------------------

TOKEN = "tok-SEKRIT-7f3a9c1e5b"
DB_PW = "pw-SEKRIT-db-91c"
URL_PW = "SEKRITurlpw42"
AWS = "AKIASEKRIT0AWS0K3Y00"
URL = f"postgresql://app:{URL_PW}@db.internal/prod"
SECRETS = [TOKEN, DB_PW, URL_PW, AWS, "SEKRIT"]

CELLS = [
    f"import os\nAPI_TOKEN = '{TOKEN}'",
    f"os.environ['DB_PASSWORD'] = '{DB_PW}'\nurl = '{URL}'",
    f"aws = '{AWS}'",
    "n = len(API_TOKEN) + len(url) + len(aws)\nprint(n)",
]


def assert_no_secret_in(root: Path, *, skip_notebooks: bool = False) -> int:
    """Grep the raw bytes of every file under ``root``; returns how many files were read."""
    count = 0
    for path in root.rglob("*"):
        if not path.is_file() or (skip_notebooks and path.suffix == ".ipynb"):
            continue
        data = path.read_bytes()
        count += 1
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {path}"
    return count


def db_dir(store: Store) -> Path:
    """The directory of the SQLite database: the .db, its WAL, the journal directory, artifacts."""
    assert store.location.sqlite_path is not None
    return store.location.sqlite_path.parent


def recorded_parts(nb: object) -> str:
    """What nbmlops adds to an executed notebook: its metadata and the cells' outputs."""
    return json.dumps([nb["metadata"], [c.get("outputs", []) for c in nb["cells"]]])  # type: ignore[index]


@pytest.mark.kernel
def test_notebook_run_stores_no_secret_and_export_and_reproduce_name_the_variables(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    proj = tmp_path / "proj"
    make_notebook(proj / "secret.ipynb", [*CELLS])
    proc = nbmlops("--store", store_url, "run", "secret.ipynb", "--json", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]

    cells = store.cell_executions(run_id)
    assert [c.source_hash for c in cells] == [hashlib.sha256(s.encode()).hexdigest() for s in CELLS]
    assert cells[0].source == "import os\nAPI_TOKEN = '<redacted:API_TOKEN>'"
    assert "'postgresql://app:<redacted:url-password>@db.internal/prod'" in cells[1].source
    assert cells[3].source == CELLS[3]  # clean cells are stored as they are

    (executed,) = (store.location.runs_dir / run_id).glob("*.ipynb")
    nb = nbformat.read(executed, as_version=4)
    warnings = [o["text"] for c in nb.cells for o in c.outputs if o.get("name") == "stderr"]
    assert len(warnings) == 1 and warnings[0] == nb.cells[0].outputs[0]["text"]  # once, at cell 1
    assert "cell [1] holds a secret (API_TOKEN)" in warnings[0]
    assert "os.environ['API_TOKEN']" in warnings[0] and "%env API_TOKEN=" in warnings[0]
    assert nb.cells[3].outputs[0]["text"] == f"{len(TOKEN + URL + AWS)}\n"  # ran unchanged
    for secret in SECRETS:
        assert secret not in recorded_parts(nb)

    # export: the marker, not the secret, and which variable must come from the environment
    out = tmp_path / "exported.ipynb"
    result = export_notebook("n", out, run_id=run_id, store=store)
    exported = out.read_text()
    assert "<redacted:API_TOKEN>" in exported and "<redacted:DB_PASSWORD>" in exported
    notes = "\n".join(result.warnings)
    assert "cell [1] held a secret" in notes
    assert "API_TOKEN must come from the environment (set API_TOKEN; read os.environ['API_TOKEN'])" in notes
    assert "DB_PASSWORD must come from the environment" in notes
    assert "url must come from the environment" in notes
    assert "aws must come from the environment (set AWS; read os.environ['AWS'])" in notes
    assert "Secrets written in the run's cells were not stored" in exported

    # reproduce: the kept executed copy still matches the redacted cells (by hash) and runs
    proc = nbmlops("--store", store_url, "reproduce", run_id, "--json", cwd=proj)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reproducible"] is True
    secret_notes = {d["name"]: d["note"] for d in report["drift"] if d["kind"] == "secret"}
    assert [name[:8] for name in sorted(secret_notes)] == ["cell 0: ", "cell 1: ", "cell 2: "]
    assert "API_TOKEN must come from the environment" in secret_notes["cell 0: import os"]
    assert all(d["blocking"] is False for d in report["drift"] if d["kind"] == "secret")
    assert store.get_run(report["run_id"]).tags.get("nbmlops.reproduce_notebook")  # the kept copy

    # the database (and its WAL), the journal directory, kernel logs: not one secret byte
    assert assert_no_secret_in(db_dir(store), skip_notebooks=True) >= 2
    assert store.location.journal_dir.parent == db_dir(store)
    if (proj / ".nbmlops").exists():
        assert_no_secret_in(proj / ".nbmlops", skip_notebooks=True)


@pytest.mark.kernel
def test_pipeline_step_with_a_secret_is_cached_and_goes_stale_when_the_code_changes(
    tmp_path: Path, store_url: str, store: Store
) -> None:
    def step(token: str) -> None:
        make_notebook(tmp_path / "fetch.ipynb", [
            f"API_TOKEN = '{token}'",
            "open('out.txt', 'w').write(str(len(API_TOKEN)))",
        ])

    (tmp_path / "pipeline.yaml").write_text(
        "name: sec\nsteps:\n  fetch: {notebook: fetch.ipynb, outputs: [out.txt]}\n")

    def run() -> str:
        result = PipelineRunner(load_pipeline(tmp_path / "pipeline.yaml"), store_url=store_url).run()
        return result.steps["fetch"].state

    step(TOKEN)
    assert run() == "ran"
    assert run() == "cached"
    step(TOKEN + "9")  # a new secret is new code: the step is stale
    assert run() == "ran"
    assert (tmp_path / "out.txt").read_text() == str(len(TOKEN) + 1)
    steps = [r for r in store.list_runs(limit=100).runs if r.parent_run_id and not r.tags.get("nbmlops.cached_from")]
    sources = {(c.source, c.source_hash) for r in steps for c in store.cell_executions(r.id) if c.seq == 0}
    assert {s for s, _ in sources} == {"API_TOKEN = '<redacted:API_TOKEN>'"}
    assert len({h for _, h in sources}) == 2  # one redacted text, two originals told apart
    assert_no_secret_in(db_dir(store), skip_notebooks=True)


# -- the kernel side: the journal never holds the secret, one warning per session ---------------

def test_journal_holds_the_marker_not_the_secret_and_the_warning_shows_once(
    shell: InteractiveShell, store: Store, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("NBMLOPS_BUSY_TIMEOUT_MS", "100")
    # the store is locked: every record waits in the journal, where we can read it
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.location.sqlite_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        shell.run_line_magic("load_ext", "nbmlops")
        session = active_session()
        assert session is not None
        assert shell.run_cell(CELLS[0]).success
        assert shell.run_cell("%env DB_PASSWORD=" + DB_PW).success
        assert shell.run_cell(f"aws = '{AWS}'").success
        assert shell.run_cell(f"url = '{URL}'").success
        assert not shell.run_cell("raise ConnectionError('cannot reach ' + url)").success
        assert shell.user_ns["API_TOKEN"] == TOKEN and shell.user_ns["aws"] == AWS  # ran unchanged
        journal = b"".join(p.read_bytes() for p in store.location.journal_dir.rglob("*") if p.is_file())
        assert b"<redacted:API_TOKEN>" in journal and b"<redacted:DB_PASSWORD>" in journal
        for secret in SECRETS:
            assert secret.encode() not in journal
        err = capsys.readouterr().err
        assert err.count("holds a secret") == 1, err
        assert "cell [1] holds a secret (API_TOKEN)" in err
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(timeout=10)
    assert session.flush(timeout=30.0) is True
    sources = [c.source for c in store.cell_executions(session.run_id or "")]
    assert sources[:3] == ["import os\nAPI_TOKEN = '<redacted:API_TOKEN>'", "%env DB_PASSWORD=<redacted:DB_PASSWORD>",
                           "aws = '<redacted:aws-access-key>'"]
    failed = store.cell_executions(session.run_id or "")[-1]
    assert failed.error_value == "cannot reach postgresql://app:<redacted:url-password>@db.internal/prod"
    assert_no_secret_in(db_dir(store))
