"""Torch-free foundation shared by training/ and app/: rooms, scenes, grids, sampling (numpy
only)."""

from geometry.airfoils import (
    BOX,
    check_polylines,
    encoder_points,
    field_points,
    inside,
    naca4,
    parse_naca,
    signed_distance,
    two_element,
)
from geometry.grids import grid_points, lattice_in_box
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
    "two_element",
]
