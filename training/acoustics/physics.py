"""Physical constants and the paper's source and wall parameterisations."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Medium:
    c: float = 343.0  # speed of sound, m/s
    rho: float = 1.2  # air density, kg/m^3

    @property
    def impedance(self) -> float:
        """Characteristic impedance rho * c of air, Pa s/m."""
        return self.rho * self.c


AIR = Medium()


def pulse_sigma(fmax: float, c: float = 343.0) -> float:
    """Width of the Gaussian pulse exp(-r^2 / sigma^2) whose spectrum is ~e^-4 down at fmax."""
    return c / (math.pi * fmax / 2.0)


def impedance_from_absorption(alpha: float, medium: Medium = AIR) -> float:
    """Real wall impedance whose normal-incidence absorption coefficient is `alpha`.

    alpha = 1 - R^2 with R = (Z - rho c) / (Z + rho c) for a locally reacting wall.
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"absorption must be in (0, 1], got {alpha}")
    r = math.sqrt(1.0 - alpha)
    return medium.impedance * (1.0 + r) / (1.0 - r)


def absorption_from_impedance(z: float, medium: Medium = AIR) -> float:
    r = (z - medium.impedance) / (z + medium.impedance)
    return 1.0 - r * r
