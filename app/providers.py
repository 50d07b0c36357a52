"""onnxruntime's execution providers by name, and how the service prepares CUDA.

Needs nothing of the service's stack, so `benchmarks.gpu_check` opens its sessions the way
the service does on a machine that has onnxruntime-gpu alone.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# TF32 matrix products (onnxruntime's CUDA default) keep 10 mantissa bits: the CUDA answers
# then differ from the CPU's by 1e-3 of the field's scale (measured on an H200). Full float32
# keeps them far closer, and these graphs are too small for TF32 to pay.
CUDA_OPTIONS = {"use_tf32": "0"}


def provider_entries(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """What InferenceSession's `providers` takes: CUDA with its options, the others by name."""
    return [(p, CUDA_OPTIONS) if p == CUDA else p for p in providers]


def preload_cuda() -> str:
    """Load CUDA and cuDNN before the first CUDA session: from the nvidia-* wheels (as torch
    installs them), else the system's paths. Without it onnxruntime-gpu next to pip-installed
    CUDA finds no libraries and quietly runs on the CPU. Returns what onnxruntime said."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return f"onnxruntime {ort.__version__} has no preload_dlls (1.21 or newer has)"
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said):  # it prints its warnings
            preload()
    except Exception as exc:  # only a help: the sessions say whether CUDA really works
        return f"{type(exc).__name__}: {exc}"
    return said.getvalue().strip()
