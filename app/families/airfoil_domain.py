"""The airfoil (task airfoil-flow) names of the generic enf2enf domain.

An airfoil manifest's domain (aoa_deg, speed, naca, panels_per_element) is mapped onto
`GeometryDomain` (app/families/geometry_domain.py) by `GeometryDomain.from_manifest(domain,
"airfoil-flow")`; these names stay for code written against the airfoil-only service.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.families.geometry_domain import (
    AIRFOIL_TASK,
    F64,
    MAX_CURVE_POINTS,
    GeometryDomain,
    GridPoints,
    Placed,
    geometry_id,
)

AirfoilDomain = GeometryDomain


def airfoil_domain(domain: Mapping[str, Any]) -> GeometryDomain:
    """An airfoil manifest's domain: conditions aoa_deg [deg] and speed (> 0), NACA sections."""
    return GeometryDomain.from_manifest(domain, AIRFOIL_TASK)


__all__ = [
    "F64",
    "MAX_CURVE_POINTS",
    "AirfoilDomain",
    "GridPoints",
    "Placed",
    "airfoil_domain",
    "geometry_id",
]
