"""onnxruntime's execution providers by name, and the options the service gives CUDA.

Imports onnxruntime's names only, so `benchmarks.gpu_check` opens its sessions the way the
service does on a machine that has onnxruntime-gpu and nothing of the service's stack.
"""

from __future__ import annotations

from collections.abc import Sequence

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

# TF32 matrix products (onnxruntime's CUDA default) keep 10 mantissa bits: the CUDA answers
# then differ from the CPU's by 1e-3 of the field's scale (measured on an H200). Full float32
# keeps them far closer, and these graphs are too small for TF32 to pay.
CUDA_OPTIONS = {"use_tf32": "0"}


def provider_entries(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """What InferenceSession's `providers` takes: CUDA with its options, the others by name."""
    return [(p, CUDA_OPTIONS) if p == CUDA else p for p in providers]
