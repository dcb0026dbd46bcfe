"""Live progress of a pipeline run in a terminal, and the final summary table (plain text).

On a terminal the step block is redrawn in place (state, elapsed, attempts); anywhere else
(CI logs, pipes) one line is printed per state change, so logs stay readable.
"""

from __future__ import annotations

import threading
import time
from typing import IO, Any

from .._format import format_duration
from .runner import PipelineResult, StepResult

__all__ = ["ProgressDisplay", "summary_table"]

_MARK = {
    "pending": "·", "running": "▶", "ran": "✔", "cached": "↺", "failed": "✘",
    "skipped": "-", "cancelled": "■",
}


def _state_text(r: StepResult, now: float) -> str:
    if r.state == "running":
        elapsed = now - (r.started or now)
        extra = f" (attempt {r.attempts})" if r.attempts > 1 else ""
        return f"running {format_duration(elapsed)}{extra}"
    if r.state == "ran":
        return f"ran in {format_duration(r.duration)}" + (f" ({r.attempts} attempts)" if r.attempts > 1 else "")
    if r.state == "cached":
        return f"cached (from run {(r.cached_from or '')[:8]})"
    if r.state in ("failed", "skipped", "cancelled"):
        return f"{r.state}: {r.error}" if r.error else r.state
    return r.state


class ProgressDisplay:
    """``on_event`` callback for :class:`~nbmlops.pipeline.runner.PipelineRunner`."""

    def __init__(self, stream: IO[str], steps: list[str], *, live: bool | None = None) -> None:
        self.stream = stream
        self.steps = steps
        self.live = stream.isatty() if live is None else live
        self.width = max((len(s) for s in steps), default=4)
        self.results: dict[str, StepResult] = {}
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: str, result: StepResult) -> None:
        with self._lock:
            self.results[result.name] = result
            if self.live:
                if event != "tick" or time.monotonic() - self._last_draw > 0.5:
                    self._draw()
            elif event in ("start", "end", "retry"):
                now = time.time()
                line = f"[{format_duration(time.monotonic() - self.t0):>7}] {result.name}: "
                if event == "retry":
                    line += f"retrying (attempt {result.attempts}) after: {result.error}"
                elif event == "start":
                    line += "started"
                else:
                    line += _state_text(result, now)
                self.stream.write(line + "\n")
                self.stream.flush()

    def _draw(self) -> None:
        now = time.time()
        lines = []
        for name in self.steps:
            r = self.results.get(name) or StepResult(name)
            lines.append(f" {_MARK.get(r.state, '?')} {name:<{self.width}}  {_state_text(r, now)}")
        out = ""
        if self._drawn:
            out += f"\x1b[{self._drawn}F"  # back to the first line of the block
        out += "".join(f"\x1b[2K{line}\n" for line in lines)
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(lines)
        self._last_draw = time.monotonic()

    def finish(self) -> None:
        with self._lock:
            if self.live:
                self._draw()


def summary_table(result: PipelineResult, order: list[str], *, cwd: Any = None) -> str:
    """The final table: one row per step, then one line for the pipeline."""
    import os

    from .._format import render_table

    rows = []
    for name in order:
        r = result.steps[name]
        nb = ""
        if r.output_notebook is not None:
            try:
                nb = os.path.relpath(r.output_notebook, cwd or os.getcwd())
            except ValueError:
                nb = str(r.output_notebook)
        detail = r.error or (f"from {r.cached_from[:8]}" if r.cached_from else "")
        rows.append([
            name, r.state,
            format_duration(r.duration) if r.state in ("ran", "failed") else "-",
            str(r.attempts) if r.attempts else "-",
            (r.run_id or "")[:8] or "-", nb or "-", detail,
        ])
    text = render_table(
        ["step", "state", "time", "tries", "run", "executed notebook", "detail"], rows, max_width=70
    )
    counts: dict[str, int] = {}
    for r in result.steps.values():
        counts[r.state] = counts.get(r.state, 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in counts.items())
    gates = []
    for name in order:
        g = result.steps[name].gate
        if g:
            held = (f"{g['rule'].get('must_beat')} v{g['champion_version']} "
                    f"{g['champion_score']:.4f}" if g.get("champion_score") is not None
                    else f"no {g['rule'].get('must_beat') or 'holder'} yet")
            gates.append(
                f"gate {g['name']} (step {name}): candidate v{g['candidate_version']} "
                f"{g['metric']} {g['candidate_score']:.4f} vs {held} -> {g['decision'].upper()}"
                + (f" (now {g['rule'].get('alias')})" if g["promoted"] else "")
            )
    return "\n".join([
        text,
        *gates,
        f"pipeline {result.pipeline} {result.status} in {format_duration(result.duration)}: "
        f"{parts} (run {result.run_id[:8]})",
    ])
