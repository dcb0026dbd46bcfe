"""A pipeline as an Airflow 3 DAG file: one ``BashOperator`` per step running
``nbmlops pipeline step`` on the worker, then ``nbmlops pipeline finish`` (trigger rule
``all_done``) ending the pipeline run.

The generated file imports only Airflow (``airflow.sdk``, the standard provider's
``BashOperator``) and the standard library: nbmlops is not installed next to Airflow, the worker
runs its own ``nbmlops`` command. It is deterministic (the same pipeline and options give the
same bytes) and carries no store URL or secret: workers find the store as ``nbmlops`` always
does (``NBMLOPS_STORE_URL``, else the ``.nbmlops/`` above the working directory).

Nothing of the pipeline reaches the shell unquoted: literal parts are ``shlex``-quoted when the
DAG is parsed; per-run values (the DAG run's params, its id) go through the task's templated
``env`` and the command reads them from ``"$VAR"``. Airflow renders ``bash_command``, ``env`` and
``cwd`` with Jinja, so literal parts containing Jinja delimiters are refused at export.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError
from .common import ExportSource, check_overwrite, generated_header, write_generated

__all__ = ["AirflowExport", "export_airflow", "render_dag", "dag_id_for", "FINISH_TASK"]

#: the task that ends the pipeline run (step names cannot contain a dot, so it never clashes)
FINISH_TASK = "nbmlops.finish"
#: seconds an Airflow task gets beyond the step's own ``timeout`` (which nbmlops enforces: it
#: interrupts the kernel, kills it 5 s later and records the failure): process start, papermill
#: import, kernel start
TIMEOUT_MARGIN = 60.0
#: Airflow's own limit for the finish task
FINISH_TIMEOUT = 600.0
_DAG_ID = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
_JINJA = ("{{", "{%", "{#")


@dataclass(frozen=True)
class AirflowExport:
    """What :func:`export_airflow` wrote."""

    path: Path
    dag_id: str
    #: task ids: the steps in topological order, then :data:`FINISH_TASK`
    tasks: list[str]
    schedule: str | None


def dag_id_for(name: str) -> str:
    """A valid Airflow DAG id from a pipeline name (characters Airflow refuses become ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:250] or "pipeline"


def _check_cron(cron: str, tz: str | None) -> str:
    """The same checks (and messages) as ``nbmlops schedule add``."""
    from ..schedule.cron import parse_cron

    return parse_cron(cron, tz).expr


def _no_jinja(what: str, value: str) -> str:
    if any(d in value for d in _JINJA):
        raise InvalidArgumentError(
            f"{what} {value!r} contains a Jinja delimiter ({', '.join(_JINJA)}), which Airflow "
            "would render; rename it"
        )
    return value


def _q(text: str) -> str:
    """A Python string literal in double quotes (JSON's escapes are Python's)."""
    return json.dumps(text)


def _literal(value: Any, where: str) -> str:
    """``value`` (a pipeline param: YAML scalars, lists, mappings) as a Python literal."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(
            f"parameter {where}: {value!r} cannot be an Airflow param (not JSON)"
        )
    if isinstance(value, dict):
        items = ", ".join(f"{_literal(k, where)}: {_literal(v, where)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v, where) for v in value) + "]"
    if isinstance(value, str):
        return _q(value)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    raise InvalidArgumentError(f"parameter {where}: {type(value).__name__} cannot be an Airflow param")


def _param(name: str, value: Any) -> str:
    """An Airflow ``Param`` with a JSON Schema type, so the trigger form offers the right input."""
    kind = ("boolean" if isinstance(value, bool) else "integer" if isinstance(value, int)
            else "number" if isinstance(value, float) else "string" if isinstance(value, str)
            else "array" if isinstance(value, (list, tuple)) else "object"
            if isinstance(value, dict) else None)
    literal = _literal(value, name)
    return f"Param({literal}, type={_q(kind)})" if kind else f"Param({literal})"


def _seconds(value: float) -> str:
    return f"datetime.timedelta(seconds={float(value)!r})"


def render_dag(
    src: ExportSource,
    *,
    dag_id: str,
    nbmlops_command: list[str],
    cron: str | None = None,
    tz: str | None = None,
    retry_delay: float = 60.0,
) -> str:
    """The DAG file's text (deterministic)."""
    pipe = src.pipeline
    for part in nbmlops_command:
        _no_jinja("--nbmlops-command", part)
    _no_jinja("the project directory", str(src.project_dir))
    _no_jinja("the pipeline's directory", src.pipeline_dir)
    _no_jinja("the pipeline file", src.definition)
    command = ["nbmlops export airflow", shlex.quote(src.source), "-o DAGS_DIR"]
    if dag_id != dag_id_for(pipe.name):
        command.append(f"--dag-id {shlex.quote(dag_id)}")
    if cron:
        command.append(f"--cron {shlex.quote(cron)}")
    if tz:
        command.append(f"--tz {shlex.quote(tz)}")
    if nbmlops_command != ["nbmlops"]:
        command.append(f"--nbmlops-command {shlex.quote(shlex.join(nbmlops_command))}")
    if retry_delay != 60.0:
        command.append(f"--retry-delay {retry_delay:g}")
    header = generated_header("Airflow DAG", src, " ".join(command))
    if cron and tz:
        schedule = f"CronTriggerTimetable({_q(cron)}, timezone={_q(tz)})"
    elif cron:
        schedule = _q(cron)
    else:
        schedule = "None"
    imports = "from airflow.sdk import DAG, Param"
    if cron and tz:
        imports += """

try:
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.0
    from airflow.timetables.trigger import CronTriggerTimetable"""
    pipeline_dir = ("PROJECT_DIR" if src.pipeline_dir == "."
                    else f"os.path.join(PROJECT_DIR, {_q(src.pipeline_dir)})")
    out: list[str] = [*(f"# {line}".rstrip() for line in header)]
    out.append(f'''"""Airflow DAG of the nbmlops pipeline {pipe.name!r} ({len(src.order)} steps).

Each task runs one step on the worker: ``nbmlops pipeline step`` executes the step's notebook
with papermill and the nbmlops engine and records it in the nbmlops store the worker resolves
(NBMLOPS_STORE_URL, else the .nbmlops/ of the project directory), as a child of one pipeline run
per DAG run. The last task ends that pipeline run. Workers need nbmlops installed, the project
directory (on a filesystem they share) and the store. See nbmlops' docs/orchestrators.md.
"""

from __future__ import annotations

import datetime
import os
import shlex

from airflow.providers.standard.operators.bash import BashOperator
{imports}

# The project directory on the workers: where it was at export, unless NBMLOPS_PROJECT_DIR says.
PROJECT_DIR = os.environ.get("NBMLOPS_PROJECT_DIR") or {_q(str(src.project_dir))}
# Where every step runs (the directory of the pipeline definition).
PIPELINE_DIR = {pipeline_dir}
PIPELINE = {_q(src.definition)}
# The nbmlops command on the workers.
NBMLOPS = shlex.split(os.environ.get("NBMLOPS_COMMAND") or "") or [{", ".join(_q(c) for c in nbmlops_command)}]

# Values of the DAG run reach nbmlops through the environment, never through the command line.
ENV = {{
    "NBMLOPS_PARENT_KEY": "{{{{ dag.dag_id }}}}/{{{{ run_id }}}}",
    "NBMLOPS_PIPELINE_PARAMS": "{{{{ params | tojson }}}}",
}}


def nbmlops(*args: str) -> str:
    """The bash command running ``nbmlops ARGS`` for this DAG run."""
    return (
        "exec " + shlex.join([*NBMLOPS, *args])
        + ' --parent-key "$NBMLOPS_PARENT_KEY" --params-json "$NBMLOPS_PIPELINE_PARAMS"'
        + " --orchestrator airflow"
    )


TASK = dict(
    cwd=PIPELINE_DIR,
    env=ENV,
    append_env=True,  # the worker's environment (PATH, NBMLOPS_STORE_URL...) plus ENV
    skip_on_exit_code=None,
    do_xcom_push=False,
)

with DAG(
    dag_id={_q(dag_id)},
    description={_q(f"nbmlops pipeline {pipe.name} ({src.definition})")},
    schedule={schedule},
    catchup=False,
    max_active_runs=1,  # the steps of two runs would write the same files
    params={{''')
    for name, value in pipe.params.items():
        out.append(f"        {_q(name)}: {_param(name, value)},")
    out.append("    },")
    out.append(f"    tags=[{_q('nbmlops')}, {_q(pipe.name[:100])}],")
    out.append(") as dag:")
    out.append("    steps: dict[str, BashOperator] = {}")
    for name in src.order:
        step = pipe.steps[name]
        timeout = ("None" if step.timeout is None
                   else _seconds(step.timeout + TIMEOUT_MARGIN))
        notebook = " ".join(Path(step.notebook).name.split())
        retry = (f"\n        retry_delay={_seconds(retry_delay)}," if step.retries else "")
        out.append(f"""    # {name}: {notebook}{f", nbmlops timeout {step.timeout:g} s" if step.timeout else ""}
    steps[{_q(name)}] = BashOperator(
        task_id={_q(name)},
        bash_command=nbmlops("pipeline", "step", PIPELINE, {_q(name)}),
        retries={step.retries},{retry}
        execution_timeout={timeout},
        **TASK,
    )""")
    out.append(f"""    finish = BashOperator(
        task_id={_q(FINISH_TASK)},
        bash_command=nbmlops("pipeline", "finish", PIPELINE),
        trigger_rule="all_done",  # also after a failed step: the pipeline run ends as failed
        retries=0,
        execution_timeout={_seconds(FINISH_TIMEOUT)},
        **TASK,
    )
""")
    for dep, name in pipe.edges():
        out.append(f"    steps[{_q(dep)}] >> steps[{_q(name)}]")
    leaves = [n for n in src.order if not any(dep == n for dep, _ in pipe.edges())]
    out.append(f"    [{', '.join(f'steps[{_q(n)}]' for n in leaves)}] >> finish")
    return "\n".join(out) + "\n"


def export_airflow(
    src: ExportSource,
    dags_dir: Path,
    *,
    dag_id: str | None = None,
    nbmlops_command: str = "nbmlops",
    cron: str | None = None,
    tz: str | None = None,
    retry_delay: float = 60.0,
) -> AirflowExport:
    """Write ``DAGS_DIR/<dag_id>.py``; never over a file nbmlops did not generate."""
    if dag_id is None:
        dag_id = dag_id_for(src.pipeline.name)
    elif not _DAG_ID.match(dag_id):
        raise InvalidArgumentError(
            f"--dag-id {dag_id!r}: Airflow DAG ids are 1-250 letters, digits, '_', '.' or '-'"
        )
    if tz is not None and cron is None:
        raise InvalidArgumentError("--tz needs --cron (the time zone of the schedule)")
    if cron is not None:
        cron = _check_cron(cron, tz)
    if not retry_delay >= 0:
        raise InvalidArgumentError("--retry-delay must be a number of seconds >= 0")
    command = shlex.split(nbmlops_command)
    if not command:
        raise InvalidArgumentError("--nbmlops-command must not be empty")
    if dags_dir.exists() and not dags_dir.is_dir():
        raise InvalidArgumentError(f"{dags_dir} is not a directory")
    text = render_dag(src, dag_id=dag_id, nbmlops_command=command, cron=cron, tz=tz,
                      retry_delay=retry_delay)
    target = dags_dir / f"{dag_id}.py"
    check_overwrite(target, src)
    write_generated(target, text)
    return AirflowExport(path=target, dag_id=dag_id, tasks=[*src.order, FINISH_TASK],
                         schedule=cron)
