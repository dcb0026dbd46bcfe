"""Serving registered models over HTTP (``nbmlops serve``): a Starlette app on uvicorn that
follows aliases, micro-batches concurrent requests, logs predictions and splits traffic between
champion and challenger. See ``docs/serving.md``.

Importing this package is light; the web framework is imported by :mod:`.app` only.
"""

from __future__ import annotations

from .options import Arm, ServeOptions, parse_split, parse_target

__all__ = ["Arm", "ServeOptions", "parse_split", "parse_target"]
