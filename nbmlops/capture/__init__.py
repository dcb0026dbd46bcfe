"""Kernel-side capture: IPython hooks, static analysis, instrumentation and the writer."""

from __future__ import annotations

from .session import CaptureSession, active_session

__all__ = ["CaptureSession", "active_session"]
