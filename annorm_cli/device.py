"""Resolve the compute device once, at the edge; library code then follows `x.device`."""
from __future__ import annotations

import contextlib

import torch

from annorm_cli.errors import DeviceUnavailableError, BadInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn "auto" | "cpu" | "cuda[:N]" | "mps" into a torch.device that exists here.

    "auto" picks cuda, then mps, then cpu. Asking for a device that is absent raises
    DeviceUnavailableError instead of silently falling back.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    name = (name or "auto").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in DEVICE_CHOICES:
        raise BadInputError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                "CUDA was requested but no CUDA GPU is available here; use --device cpu or --device auto.")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"GPU {device.index} was requested but only {torch.cuda.device_count()} are present; "
                "pick a smaller index.")
        return device
    if kind == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            "MPS was requested but Apple's Metal backend is not available here; use --device cpu or --device auto.")
    return torch.device(kind)


def autocast(device: torch.device, precision: str):
    """Autocast context for "bf16", a no-op for "fp32" (AN keeps its statistics in float32 either way)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
