"""The continuous-training loop, end to end, on one machine (``make demo-loop``).

train -> gate -> champion -> serve -> normal traffic (no drift) -> shifted traffic -> drift
detected -> the drift trigger fires the retraining pipeline -> the challenger beats the champion
on recent labelled traffic -> promoted -> the running service answers with the new version,
without a restart.

Every step is the real command line (``nbmlops serve``, ``nbmlops monitor``, ``nbmlops trigger``,
``nbmlops scheduler --once``) in real processes on loopback, so this script is also what
``tests/test_loop.py`` runs. Run it from the project directory that holds ``pipeline/`` and
``loop/`` (``example_notebooks``):

    python loop/loop.py [--port 8765] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import traffic  # noqa: E402  (beside this file)

MODEL = "wine"
TRIGGER = "retrain-on-drift"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def nbmlops(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess:
    """Run the nbmlops command line (the one installed beside this Python)."""
    exe = Path(sys.executable).with_name("nbmlops")
    cmd = [str(exe) if exe.exists() else "nbmlops", *args]
    if not quiet:
        print("$ nbmlops " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=quiet)
    if check and proc.returncode != 0:
        raise SystemExit(f"nbmlops {args[0]} exited {proc.returncode}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nbmlops serve exited {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nbmlops serve was not ready within {timeout:.0f} s")


def champion_version() -> int | None:
    exe = Path(sys.executable).with_name("nbmlops")
    proc = subprocess.run([str(exe) if exe.exists() else "nbmlops", "models", "show",
                           f"{MODEL}@champion", "--json"], text=True, capture_output=True)
    if proc.returncode != 0:
        return None
    return int(json.loads(proc.stdout)["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the continuous-training loop, end to end")
    parser.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    args = parser.parse_args(argv)
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}"
    work = HERE
    labels = work / "data" / "labels.csv"
    for stale in (work / "data", work / "models", work / "reports"):
        shutil.rmtree(stale, ignore_errors=True)
    (work / "data").mkdir()
    (work / "reports").mkdir()
    summary: dict[str, Any] = {}

    say("1. a champion: the example pipeline trains, gates and promotes wine@champion")
    first = champion_version()
    if first is None:
        nbmlops("pipeline", "run", "pipeline/pipeline.yaml")
        first = champion_version()
    if first is None:
        raise SystemExit("the example pipeline did not make a champion")
    print(f"wine@champion is version {first}")
    summary["champion_before"] = first

    say(f"2. serve it: nbmlops serve {MODEL}@champion on {url} (follows the alias)")
    exe = Path(sys.executable).with_name("nbmlops")
    service = subprocess.Popen(
        [str(exe) if exe.exists() else "nbmlops", "serve", f"{MODEL}@champion",
         "--port", str(port), "--poll", "1"],
        start_new_session=True)
    try:
        wait_healthy(url, service)
        print(json.dumps(get_json(f"{url}/v1/models/{MODEL}"), indent=None)[:300])

        say("3. normal traffic: 300 wines from the old instrument")
        normal = traffic.replay(url, 300, seed=1, shift=False, prefix="normal", labels=labels)
        print(f"answered by {normal['versions']}; accuracy seen by the client "
              f"{normal['accuracy']:.3f}")
        time.sleep(2.5)  # the prediction log flushes every 2 s
        proc = nbmlops("monitor", f"{MODEL}@champion", check=False)
        summary["monitor_normal_exit"] = proc.returncode

        say("4. a drift trigger: retrain when the champion's traffic drifts (PSI > 0.2)")
        nbmlops("trigger", "rm", TRIGGER, check=False, quiet=True)  # from an earlier demo
        nbmlops("trigger", "add", "loop/retrain.yaml", "--on-drift", f"{MODEL}@champion",
                "--threshold", "0.2", "--window", "300", "--min-rows", "100",
                "--name", TRIGGER)

        say("5. a new lab instrument: 400 wines whose flavanoids, OD280 and proline read low")
        shifted = traffic.replay(url, 400, seed=2, shift=True, prefix="shifted", labels=labels)
        print(f"answered by {shifted['versions']}; accuracy seen by the client "
              f"{shifted['accuracy']:.3f}")
        summary["accuracy_shifted_before"] = shifted["accuracy"]
        time.sleep(2.5)
        report = work / "reports" / "drift.html"
        proc = nbmlops("monitor", f"{MODEL}@champion", "--window", "300", "--html",
                       str(report), check=False)
        summary["monitor_shifted_exit"] = proc.returncode
        print(f"drift report: {report}")

        say("6. the ground truth arrives: labels joined to the prediction log by request id")
        nbmlops("monitor", "label", str(labels), "--model", MODEL)

        say("7. the scheduler's poll: drift is over the threshold, so the trigger fires retraining")
        proc = nbmlops("scheduler", "--once", check=False)
        summary["scheduler_exit"] = proc.returncode
        nbmlops("trigger", "ls")

        say("8. the gate: the challenger must beat the champion on recent labelled traffic")
        nbmlops("models", "history", MODEL, "--limit", "4")
        after = champion_version()
        summary["champion_after"] = after
        if after == first:
            raise SystemExit("the retrained model was not promoted")

        say(f"9. the running service follows the alias: wine@champion is now v{after}")
        deadline = time.monotonic() + 10
        served = None
        while time.monotonic() < deadline:
            served = get_json(f"{url}/v1/models/{MODEL}").get("version")
            if served == after:
                break
            time.sleep(0.25)
        summary["served_after"] = served
        print(f"the service answers with version {served} (no restart)")
        again = traffic.replay(url, 200, seed=3, shift=True, prefix="after", labels=None)
        print(f"shifted wines now answered by {again['versions']}; accuracy seen by the client "
              f"{again['accuracy']:.3f} (was {shifted['accuracy']:.3f})")
        summary["accuracy_shifted_after"] = again["accuracy"]
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
    # kept (with its fire history) but paused, so a scheduler started later does not retrain
    nbmlops("trigger", "pause", TRIGGER, check=False)

    say("where to look")
    print(f"  nbmlops models history {MODEL}               # the promotion and the gate's figures")
    print(f"  nbmlops trigger history {TRIGGER}  # the fire and the drift that caused it")
    print(f"  nbmlops monitor {MODEL}@champion             # drift of the new champion's traffic")
    print(f"  {report.relative_to(Path.cwd()) if report.is_relative_to(Path.cwd()) else report}"
          "  # the drift report that fired it")
    print("  .nbmlops/predictions/wine/                 # the prediction log (parquet)")
    if args.json:
        print(json.dumps(summary))
    ok = summary.get("served_after") == summary.get("champion_after")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
