"""A pipeline as a Kubeflow Pipelines v2 spec, compiled with the kfp SDK (imported only here,
and only when an export asks for it: ``pip install 'nbmlops[kfp]'``).

One container component per step runs ``nbmlops pipeline step`` in the given image; ``.after()``
gives the dependencies, ``set_retry`` the step's retries, and the pipeline's params become
pipeline inputs passed to every step (``-p NAME VALUE``; nbmlops coerces the text to the type of
the param's default). An exit handler runs ``nbmlops pipeline finish`` whether the steps
succeeded or not. Every task gets the pipeline job's id as the parent key, so one job is one
nbmlops pipeline run with one child run per step. KFP's own caching is off (nbmlops caches
steps itself, and KFP would skip a task whose inputs it saw before without running nbmlops).
The containers need the project directory mounted (at ``project_mount``) and the store
(``NBMLOPS_STORE_URL``, or the project's ``.nbmlops/``).

Only the SDK's public API is used: ``dsl.container_component``, ``dsl.ContainerSpec``,
``dsl.pipeline``, ``dsl.ExitHandler``, ``kfp.compiler.Compiler``.
"""

from __future__ import annotations

import inspect
import posixpath
import re
import shlex
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, NbmlopsError
from .common import ExportSource, check_overwrite, generated_header, write_generated

__all__ = ["KfpExport", "export_kfp", "kfp_name", "FINISH_TASK", "PARENT_KEY_INPUT"]

FINISH_TASK = "nbmlops-finish"
#: the component input carrying the pipeline job's id (never a pipeline param's name)
PARENT_KEY_INPUT = "nbmlops_parent_key"
_TYPES: dict[type, type] = {bool: bool, int: int, float: float, str: str, list: list, dict: dict}


@dataclass(frozen=True)
class KfpExport:
    """What :func:`export_kfp` wrote."""

    path: Path
    name: str
    #: the steps in topological order (task display names), then :data:`FINISH_TASK`
    tasks: list[str]
    image: str
    #: pipeline params that became pipeline inputs
    inputs: list[str]


def kfp_name(name: str) -> str:
    """A KFP pipeline/component name: lower case letters, digits and ``-``."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-") or "pipeline"


def _import_kfp() -> tuple[Any, Any]:
    try:
        from kfp import compiler, dsl
    except ImportError as exc:
        raise NbmlopsError(
            "exporting to Kubeflow Pipelines needs the kfp SDK (2.x), which is not installed: "
            f"pip install 'nbmlops[kfp]' ({exc})"
        ) from None
    return compiler, dsl


def _function(name: str, params: list[inspect.Parameter], body: Callable[..., Any]) -> Any:
    """A function named ``name`` with the signature ``params`` calling ``body(**kwargs)``: the
    kfp SDK reads a component's and a pipeline's inputs from the signature, and calls it with
    positional arguments."""
    names = [p.name for p in params]

    def fn(*args: Any) -> Any:
        return body(**dict(zip(names, args, strict=True)))

    fn.__name__ = fn.__qualname__ = name
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    fn.__annotations__ = {p.name: p.annotation for p in params}
    return fn


def export_kfp(
    src: ExportSource,
    output: Path,
    *,
    image: str,
    nbmlops_command: str = "nbmlops",
    project_mount: str | None = None,
    retry_delay: float = 60.0,
) -> KfpExport:
    """Compile ``src`` into ``output`` (a KFP v2 pipeline YAML); never over a file nbmlops did
    not generate."""
    if not image or not image.strip():
        raise InvalidArgumentError("--image must name a container image with nbmlops installed")
    command = shlex.split(nbmlops_command)
    if not command:
        raise InvalidArgumentError("--nbmlops-command must not be empty")
    if not retry_delay >= 0:
        raise InvalidArgumentError("--retry-delay must be a number of seconds >= 0")
    mount = project_mount or src.project_dir.as_posix()
    if not posixpath.isabs(mount):
        raise InvalidArgumentError(f"--project-mount {mount!r} must be an absolute path")
    definition = posixpath.normpath(posixpath.join(mount, src.pipeline_dir, src.definition))
    pipe = src.pipeline
    if PARENT_KEY_INPUT in pipe.params:
        raise InvalidArgumentError(f"a pipeline param cannot be named {PARENT_KEY_INPUT!r}")
    if output.exists() and output.is_dir():
        raise InvalidArgumentError(f"{output} is a directory; -o takes the YAML file to write")
    check_overwrite(output, src)

    compiler, dsl = _import_kfp()
    # params with a null default have no KFP type: they keep their default
    inputs = {k: v for k, v in pipe.params.items() if type(v) in _TYPES}
    P = inspect.Parameter
    component_params = [P(PARENT_KEY_INPUT, P.POSITIONAL_OR_KEYWORD, annotation=str)] + [
        P(k, P.POSITIONAL_OR_KEYWORD, annotation=_TYPES[type(v)]) for k, v in inputs.items()
    ]

    def component(func_name: str, args: list[str]) -> Any:
        def body(**values: Any) -> Any:
            param_args: list[Any] = []
            for key in inputs:
                param_args += ["-p", key, values[key]]
            return dsl.ContainerSpec(
                image=image, command=list(command),
                args=[*args, "--parent-key", values[PARENT_KEY_INPUT], "--orchestrator", "kfp",
                      *param_args],
            )

        return dsl.container_component(_function(func_name, component_params, body))

    steps = {name: component(kfp_name(name), ["pipeline", "step", definition, name])
             for name in src.order}
    finish = component(FINISH_TASK, ["pipeline", "finish", definition])

    def pipeline_body(**values: Any) -> None:
        key = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        exit_task = finish(**{PARENT_KEY_INPUT: key}, **values)
        exit_task.set_caching_options(False)
        exit_task.set_display_name(FINISH_TASK)
        with dsl.ExitHandler(exit_task, name="steps"):
            tasks: dict[str, Any] = {}
            for name in src.order:
                step = pipe.steps[name]
                task = steps[name](**{PARENT_KEY_INPUT: key}, **values)
                task.set_display_name(name)
                task.set_caching_options(False)
                if step.retries:
                    task.set_retry(num_retries=step.retries,
                                   backoff_duration=f"{retry_delay:g}s", backoff_factor=1.0)
                for dep in step.depends_on:
                    task.after(tasks[dep])
                tasks[name] = task

    pipeline_params = [P(k, P.POSITIONAL_OR_KEYWORD, default=v, annotation=_TYPES[type(v)])
                       for k, v in inputs.items()]
    name = kfp_name(pipe.name)
    pipeline_func = dsl.pipeline(
        name=name, description=f"nbmlops pipeline {pipe.name} ({src.definition})",
    )(_function(name.replace("-", "_"), pipeline_params, pipeline_body))

    cmd = ["nbmlops export kfp", shlex.quote(src.source), "-o FILE", f"--image {shlex.quote(image)}"]
    if command != ["nbmlops"]:
        cmd.append(f"--nbmlops-command {shlex.quote(shlex.join(command))}")
    if project_mount:
        cmd.append(f"--project-mount {shlex.quote(project_mount)}")
    if retry_delay != 60.0:
        cmd.append(f"--retry-delay {retry_delay:g}")
    header = generated_header("Kubeflow Pipelines v2 spec", src, " ".join(cmd))
    with tempfile.TemporaryDirectory(prefix="nbmlops-kfp-") as tmp:
        compiled = Path(tmp) / "pipeline.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline_func, package_path=str(compiled))
        text = compiled.read_text(encoding="utf-8")
    write_generated(output, "".join(f"# {line}".rstrip() + "\n" for line in header) + text)
    return KfpExport(path=output, name=name, tasks=[*src.order, FINISH_TASK], image=image,
                     inputs=list(inputs))
