"""Torch-free foundation shared by training/ and app/: rooms, scenes, airfoils, polylines,
grids, sampling (numpy
only)."""

from geometry.airfoils import BOX, naca4, parse_naca, two_element
from geometry.grids import grid_points, lattice_in_box
from geometry.polylines import (
    check_polylines,
    encoder_points,
    field_points,
    inside,
    signed_distance,
    surface_features,
)
from geometry.rooms import Box, Room
from geometry.scenes import AirRegion, Furniture, Scene, scene_from_spec
from geometry.voxels import VoxelScene

__all__ = [
    "BOX",
    "AirRegion",
    "Box",
    "Furniture",
    "Room",
    "Scene",
    "VoxelScene",
    "check_polylines",
    "encoder_points",
    "field_points",
    "grid_points",
    "inside",
    "lattice_in_box",
    "naca4",
    "parse_naca",
    "scene_from_spec",
    "signed_distance",
    "surface_features",
    "two_element",
]
