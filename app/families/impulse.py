"""Impulse responses of an acoustic model (`POST /v1/models/{name}/impulse-response`).

The model answers the pressure at a listener at its own times: the steps it was trained on,
over its trained window. That is the impulse response of the room to the model's source pulse
(a Gaussian whose spectrum is ~e^-4 down at fmax), sampled at the training step (2 kHz for the
shipped models). For listening it is resampled to 48 kHz, band-limited at the manifest's
fmax: above fmax the model was never shown anything but the pulse's vanishing tail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from app.families.base import PredictContext, Prediction
from app.resample import BandLimited

SAMPLE_RATE = 48_000


@runtime_checkable
class ImpulseResponder(Protocol):
    """A predictor that answers impulse responses (the acoustic DeepONet)."""

    async def impulse_response(self, payload: Any, ctx: PredictContext) -> Prediction:
        """Validate `{"source", "listener"}`, compute the pressure at the listener over the
        trained window through the factor cache, and answer it with its 48 kHz resampling."""
        ...


@dataclass(frozen=True)
class ImpulseGrid:
    """The model's own time grid and band, and the resampler from one to 48 kHz."""

    times: NDArray[np.float64]
    window: tuple[float, float]
    fmax: float
    resampler: BandLimited

    @classmethod
    def from_domain(cls, domain: Mapping[str, Any]) -> ImpulseGrid | None:
        """None when the manifest does not say its time step and fmax (no IR is served)."""
        try:
            t0, t1 = (float(t) for t in domain["time_window"])
            dt = float(domain["trained_time_step"])
            fmax = float(domain["fmax"])
        except (KeyError, TypeError, ValueError):
            return None
        if not (np.isfinite([t0, t1, dt, fmax]).all() and t1 > t0 and dt > 0 and fmax > 0):
            return None
        steps = (t1 - t0) / dt
        # The window must hold a whole number of steps (as the exporter writes it), and a
        # sound of at most a minute: the resampler is sized by the manifest, not a request.
        if abs(steps - round(steps)) > 1e-6 * max(1.0, steps) or t1 - t0 > 60.0:
            return None
        n = round(steps) + 1
        times = t0 + dt * np.arange(n, dtype=np.float64)
        n_out = round((t1 - t0) * SAMPLE_RATE)
        return cls(times, (t0, t1), fmax, BandLimited(n, dt, fmax, SAMPLE_RATE, n_out))

    def fields(self, pressure: NDArray[np.float32]) -> dict[str, Any]:
        """The answer's fields for the pressure at the listener at `times`."""
        signal = self.resampler(pressure)
        return {
            "times": self.times,
            "pressure": pressure,
            "sample_rate_hz": SAMPLE_RATE,
            "signal": signal,
            "fmax_hz": self.fmax,
            "window_s": list(self.window),
            "full_scale_pa": float(np.abs(signal).max()) if signal.size else 0.0,
        }
