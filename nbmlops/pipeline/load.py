"""Which loader a pipeline definition needs: ``pipeline.yaml`` (:mod:`~nbmlops.pipeline.spec`) or
one tagged notebook (:mod:`~nbmlops.pipeline.split`). Both build the data model of ``spec``; this
module sits above them so that neither imports the other's loader."""

from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError
from .spec import Pipeline, load_pipeline_yaml

__all__ = ["load_pipeline"]


def load_pipeline(path: str | Path) -> Pipeline:
    """``*.yaml``/``*.yml`` -> :func:`load_pipeline_yaml`; ``*.ipynb`` -> the tagged-notebook
    form. A directory means its ``pipeline.yaml`` (or ``pipeline.yml``). Anything else, or a
    missing file: :class:`PipelineError`."""
    p = Path(path)
    if p.is_dir():
        for candidate in ("pipeline.yaml", "pipeline.yml"):
            if (p / candidate).is_file():
                return load_pipeline_yaml(p / candidate)
        raise PipelineError(f"{path}: no pipeline.yaml in this directory")
    if not p.exists():
        raise PipelineError(f"{path}: no such file")
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return load_pipeline_yaml(path)
    if suffix == ".ipynb":
        from .split import load_tagged_notebook  # nbformat: only for this form

        return load_tagged_notebook(path)
    raise PipelineError(f"{path}: not a pipeline definition (expected a .yaml/.yml file or a "
                        "tagged .ipynb notebook)")
