"""Band-limited resampling of a uniformly sampled signal onto another rate (numpy only).

The samples are extended evenly about both ends (x0 .. x[N-1], x[N-2] .. x1), so the periodic
continuation has no jump: an impulse response ends in a reverberant field, not in silence, and
a plain FFT resampler would ring at the seam between its last sample and its first. The
extension's spectrum (a cosine series) is cut at `fmax`, every frequency above removed and
every one below kept as it was, and what is left is evaluated at the new times. With the
whole band kept the series passes through the samples exactly; cut, it differs from them by
the signal's own content above fmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

# Cosines held for a resampler (output samples x kept frequencies): 2 M values, 16 MB. The
# shipped models need 2,400 x 51. A longer window is evaluated block by block instead.
_TABLE_VALUES = 2_000_000
_BLOCK_ROWS = 4_096


def _cosines(times: NDArray[np.float64], freqs: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.cos(2.0 * np.pi * np.outer(times, freqs))
    return out


@dataclass(frozen=True)
class BandLimited:
    """n_in samples dt apart -> n_out samples at `rate`, from the same start, band-limited."""

    n_in: int
    dt: float
    fmax: float
    rate: int
    n_out: int
    freqs: NDArray[np.float64] = field(init=False, repr=False)
    table: NDArray[np.float64] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_in < 1 or self.n_out < 1 or not (self.dt > 0 and self.fmax > 0 and self.rate > 0):
            raise ValueError(f"cannot resample {self}")
        # Bin m of the even extension (period 2 (N - 1) dt) is m / (2 (N - 1) dt) Hz.
        period = 2 * (self.n_in - 1) * self.dt
        freqs = np.arange(self.n_in) / period if self.n_in > 1 else np.zeros(1)
        # A relative slack, so that a bin that is fmax up to rounding is kept.
        freqs = freqs[freqs <= self.fmax * (1 + 1e-9)]
        object.__setattr__(self, "freqs", freqs)
        small = self.n_out * freqs.size <= _TABLE_VALUES
        object.__setattr__(self, "table", _cosines(self.times, freqs) if small else None)

    @property
    def times(self) -> NDArray[np.float64]:
        """Output times from the first input sample, s."""
        return np.arange(self.n_out) / self.rate

    def coefficients(self, samples: NDArray[np.floating]) -> NDArray[np.float64]:
        """Amplitudes of the cosine series at `freqs` (the band kept)."""
        x = np.asarray(samples, dtype=np.float64)
        if x.shape != (self.n_in,):
            raise ValueError(f"expected {self.n_in} samples, got shape {x.shape}")
        if self.n_in == 1:
            return x.copy()
        spectrum = np.fft.rfft(np.concatenate([x, x[-2:0:-1]])).real
        # The even extension's rfft is real: bin 0 and the Nyquist bin count once, the rest
        # twice (their negative-frequency twins).
        amplitudes = spectrum / (2 * (self.n_in - 1))
        amplitudes[1 : self.n_in - 1] *= 2
        return amplitudes[: self.freqs.size]

    def __call__(self, samples: NDArray[np.floating]) -> NDArray[np.float32]:
        a = self.coefficients(samples)
        if self.table is not None:
            return (self.table @ a).astype(np.float32)
        out = np.empty(self.n_out, dtype=np.float32)
        times = self.times
        for start in range(0, self.n_out, _BLOCK_ROWS):
            rows = slice(start, start + _BLOCK_ROWS)
            out[rows] = _cosines(times[rows], self.freqs) @ a
        return out

    def at(self, samples: NDArray[np.floating], times: NDArray[np.float64]) -> NDArray[np.float64]:
        """The band-limited signal at any times from the first input sample, s."""
        out: NDArray[np.float64] = _cosines(np.asarray(times), self.freqs) @ self.coefficients(
            samples
        )
        return out
