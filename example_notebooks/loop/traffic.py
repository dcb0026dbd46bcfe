"""Production traffic for the continuous-training demo, replayed against ``nbmlops serve``.

Rows are drawn from scikit-learn's bundled wine data set (nothing is downloaded), with a 3%
measurement jitter. ``--shift`` simulates a new lab instrument that reads flavanoids, the
OD280/OD315 ratio and proline low: the champion, fitted on the old instrument's readings,
misclassifies many of these wines. Each row is one request with its own ``X-Request-ID``; the
true labels are written to a CSV that ``nbmlops monitor label`` joins to the prediction log,
the way ground truth arrives later in production.

    python traffic.py --url http://127.0.0.1:8765 --rows 300 --labels labels.csv [--shift]
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

MODEL = "wine"
#: the instrument change --shift simulates: feature -> factor
SHIFT = {"flavanoids": 0.5, "od280/od315_of_diluted_wines": 0.6, "proline": 0.6}


def make_rows(n: int, *, seed: int, shift: bool) -> tuple[list[dict[str, float]], list[int]]:
    """``n`` wines (features, labels) sampled with replacement and jittered."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True).frame
    rows = wine.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    features = rows.drop(columns=["target"])
    rng = np.random.default_rng(seed)
    features = features * rng.normal(1.0, 0.03, features.shape)
    if shift:
        for column, factor in SHIFT.items():
            features[column] = features[column] * factor
    return features.round(4).to_dict("records"), [int(v) for v in rows["target"]]


def replay(url: str, n: int, *, seed: int, shift: bool, prefix: str,
           labels: Path | None = None) -> dict[str, object]:
    """Send ``n`` single-row requests over one keep-alive connection; append the true labels
    to ``labels``. Returns the versions that answered and the accuracy the client saw."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    records, truth = make_rows(n, seed=seed, shift=shift)
    versions: dict[int, int] = {}
    correct = 0
    rows_out = []
    for i, (record, label) in enumerate(zip(records, truth, strict=True)):
        request_id = f"{prefix}-{i:05d}"
        conn.request("POST", f"/v1/models/{MODEL}/predict", body=json.dumps([record]),
                     headers={"Content-Type": "application/json", "X-Request-ID": request_id})
        response = conn.getresponse()
        body = json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"request {request_id}: HTTP {response.status}: {body}")
        versions[body["version"]] = versions.get(body["version"], 0) + 1
        correct += int(str(body["predictions"][0]) == str(label))
        rows_out.append((request_id, label))
    conn.close()
    if labels is not None:
        new = not labels.exists()
        with labels.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["request_id", "label"])
            writer.writerows(rows_out)
    return {"rows": n, "versions": versions, "accuracy": correct / n if n else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8765")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shift", action="store_true", help="the new instrument's readings")
    parser.add_argument("--prefix", default=None, help="request id prefix")
    parser.add_argument("--labels", type=Path, default=None, help="append true labels here")
    args = parser.parse_args(argv)
    prefix = args.prefix or f"{'shifted' if args.shift else 'normal'}-{int(time.time())}"
    out = replay(args.url, args.rows, seed=args.seed, shift=args.shift, prefix=prefix,
                 labels=args.labels)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
