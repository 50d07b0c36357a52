"""Torch-free foundation shared by training/ and app/: rooms, grids, sampling (numpy only)."""

from geometry.grids import grid_points, lattice_in_box
from geometry.rooms import Box, Room

__all__ = ["Box", "Room", "grid_points", "lattice_in_box"]
