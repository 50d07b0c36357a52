"""Scenes (geometry/scenes.py): YAML round trips, refusals that name the key, exact geometry,
the material of every wall face by area, and the service's domain check against furniture."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from app.errors import InvalidInputError
from app.families.acoustic_domain import AcousticDomain
from geometry import Room, Scene, VoxelScene, scene_from_spec
from geometry.voxels import wall_faces

SCENES = Path(__file__).resolve().parents[1] / "configs" / "scenes"
TINY = {2: SCENES / "tiny-furnished-2d.yaml", 3: SCENES / "tiny-furnished-3d.yaml"}


def tiny_spec(dim: int) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(TINY[dim].read_text())
    return spec


def cell_grid(scene: Scene | VoxelScene, h: float) -> tuple[tuple[int, ...], np.ndarray]:
    """Counts and C-order cell centres of a uniform grid of spacing h over the scene."""
    counts = tuple(round(s / h) for s in scene.size)
    axes = [(np.arange(n) + 0.5) * s / n for n, s in zip(counts, scene.size, strict=True)]
    return counts, np.stack([m.ravel() for m in np.meshgrid(*axes, indexing="ij")], axis=-1)


def wall_area_by_alpha(scene: Scene | VoxelScene, h: float) -> dict[float, float]:
    """Voxelise at spacing h, ask the scene for every wall face's absorption (as the solver
    does) and add up the face areas per absorption value."""
    counts, centres = cell_grid(scene, h)
    air = scene.is_air(centres).reshape(counts)
    spacing = np.asarray(scene.size) / np.asarray(counts)
    areas: dict[float, float] = {}
    for a in range(scene.dim):
        faces = wall_faces(air, a)
        idx = np.argwhere(faces)
        # The solid is on the high side when the cell below the face is air.
        below = idx.copy()
        below[:, a] -= 1
        low_is_air = (below[:, a] >= 0) & air[tuple(np.maximum(below, 0).T)]
        points = (idx + 0.5) * spacing
        points[:, a] = idx[:, a] * spacing[a]
        face_area = float(np.prod(np.delete(spacing, a)))
        for side in (-1, 1):
            pick = low_is_air if side > 0 else ~low_is_air
            alphas = scene.surface_absorption(points[pick], a, side)
            for alpha, n in zip(*np.unique(alphas, return_counts=True), strict=True):
                areas[float(alpha)] = areas.get(float(alpha), 0.0) + n * face_area
    return areas


@pytest.mark.parametrize("path", sorted(SCENES.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_round_trip(path: Path, tmp_path: Path) -> None:
    scene = Scene.from_yaml(path)
    spec = scene.to_spec()
    # The spec goes into a manifest as JSON, and back out through YAML files.
    assert Scene.from_spec(json.loads(json.dumps(spec))) == scene
    out = tmp_path / "scene.yaml"
    out.write_text(yaml.safe_dump(spec))
    again = Scene.from_yaml(out)
    assert again == scene and again.to_spec() == spec
    assert scene_from_spec(spec) == scene


def test_furnished_room_is_the_papers() -> None:
    scene = Scene.from_yaml(SCENES / "furnished-room-3d.yaml")
    assert scene.size == (2.4, 2.0, 2.0) and scene.fmax == 500.0
    assert {f.name for f in scene.furniture} == {"table", "sofa", "cabinet"}
    assert scene.materials["plaster"] == 0.2 and scene.surfaces["walls"] == "plaster"
    # 9.6 m^3 minus the table 0.288, the sofa 0.576 and the cabinet 0.576.
    assert scene.air_volume() == pytest.approx(9.6 - 0.288 - 0.576 - 0.576, abs=1e-12)
    # Every plane on the 0.2 m step: the solver's 0.2 / 9 m grid carries all of them.
    for planes in scene.grid_planes():
        assert np.allclose(planes / 0.2, np.round(planes / 0.2), atol=1e-9)


Edit = Callable[[dict[str, Any], int], None]


def _furniture(key: str, *value: Any) -> Edit:
    """Set a key of the first piece of furniture (the table); coordinates cut to the dim."""
    return lambda s, d: s["furniture"][0].__setitem__(key, list(value[:d]) if value else None)


def _set(key: str, value: Any) -> Edit:
    return lambda s, d: s.__setitem__(key, value)


def _in_the_wall(s: dict[str, Any], d: int) -> None:
    # Inside the L's missing corner (2-D), inside the block above the ceiling's step (3-D).
    lo, hi = ([1.2, 0.9], [1.5, 1.1]) if d == 2 else ([0.7, 0.1, 0.45], [0.9, 0.3, 0.55])
    s["furniture"][0].update(lo=lo, hi=hi)


BAD: list[tuple[str, Edit, str]] = [
    ("furniture outside", _furniture("hi", 2.0, 0.7, 0.2), "furniture[0]"),
    ("furniture negative", _furniture("lo", -0.1, 0.3, 0.0), "furniture[0]"),
    ("furniture inverted", _furniture("hi", 0.1, 0.1, 0.1), "furniture[0]"),
    ("furniture in the wall", _in_the_wall, "furniture[0]"),
    ("furniture material", lambda s, d: s["furniture"][0].update(material="gold"),
     "furniture[0].material"),
    ("furniture no name", lambda s, d: s["furniture"][0].pop("name"), "furniture[0].name"),
    ("negative absorption", lambda s, d: s["materials"].update(wood=-0.1), "materials.wood"),
    ("absorption above 1", lambda s, d: s["materials"].update(wood=1.5), "materials.wood"),
    ("absorption a string", lambda s, d: s["materials"].update(wood="x"), "materials.wood"),
    ("no air", lambda s, d: s["furniture"].append(
        {"name": "crate", "lo": [0.0] * d, "hi": s["size"], "material": "wood"}), "furniture"),
    ("surface unknown side", lambda s, d: s["surfaces"].update(roof="wood"), "surfaces.roof"),
    ("surface unknown material", lambda s, d: s["surfaces"].update(walls="x"), "surfaces.walls"),
    ("no walls material", _set("surfaces", {}), "surfaces.walls"),
    ("size missing", lambda s, d: s.pop("size"), "size"),
    ("size 1-D", _set("size", [1.0]), "size"),
    ("typo key", _set("furnitures", []), "furnitures"),
    ("air shape", _set("air", {"shape": "round"}), "air.shape"),
    ("air box outside", lambda s, d: s.update(air={"boxes": [{"lo": [0.0] * d, "hi": [9.0] * d}]}),
     "air.boxes[0]"),
    ("fmax negative", _set("fmax", -5.0), "fmax"),
    ("fmax missing", lambda s, d: s.pop("fmax"), "fmax"),
    ("margin negative", _set("wall_margin", -0.1), "wall_margin"),
    ("margin unreachable", _set("wall_margin", 5.0), "source_region"),
    ("region outside", lambda s, d: s["source_region"].update(hi=[9.0] * d), "source_region"),
]  # fmt: skip


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize(("edit", "key"), [(e, k) for _, e, k in BAD], ids=[n for n, _, _ in BAD])
def test_bad_scene_refused_naming_the_key(dim: int, edit: Edit, key: str) -> None:
    spec = tiny_spec(dim)
    edit(spec, dim)
    with pytest.raises(ValueError, match=f"scene key '{re.escape(key)}'"):
        Scene.from_spec(spec)


def test_furniture_in_the_wall_of_the_l(tmp_path: Path) -> None:
    spec = tiny_spec(2)
    spec["furniture"][0].update(lo=[1.2, 0.9], hi=[1.5, 1.1])  # inside the L's missing corner
    message = r"scene key 'furniture\[0\]': the table lies entirely inside a wall"
    with pytest.raises(ValueError, match=message):
        Scene.from_spec(spec)
    out = tmp_path / "bad.yaml"
    out.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"bad\.yaml"):  # the file is named too
        Scene.from_yaml(out)


@pytest.mark.parametrize("dim", [2, 3])
def test_wall_distance_is_exact_and_matches_room(dim: int) -> None:
    """An L-shaped scene is the same air as the L-shaped Room, distance for distance."""
    size, cut = [1.6, 1.2, 1.0][:dim], [0.5, 0.4, 0.3][:dim]
    scene = Scene.from_spec(
        {"size": size, "air": {"shape": "l_shape", "cut": cut}, "materials": {"m": 0.2},
         "surfaces": {"walls": "m"}, "fmax": 100.0, "wall_margin": 0.0,
         "source_region": {"lo": [0.1] * dim, "hi": [0.3] * dim}}
    )  # fmt: skip
    room = Room.from_spec({"shape": "l_shape", "size": size, "cut": cut})
    pts = np.random.default_rng(0).uniform(-0.2, 1.8, size=(4000, dim))
    np.testing.assert_array_equal(scene.is_air(pts), room.is_air(pts))
    air = room.is_air(pts)
    np.testing.assert_allclose(scene.wall_distance(pts)[air], room.wall_distance(pts)[air])
    assert scene.air_volume() == pytest.approx(room.air_volume(), abs=1e-12)


@pytest.mark.parametrize("dim", [2, 3])
def test_air_volume_and_grid_planes(dim: int) -> None:
    scene = Scene.from_spec(tiny_spec(dim))
    _, centres = cell_grid(scene, 0.05)
    # On a grid through every plane each cell is all air or all solid: volumes agree exactly.
    cells = scene.is_air(centres).sum() * 0.05**dim
    assert scene.air_volume() == pytest.approx(cells, rel=1e-9)
    planes = scene.grid_planes()
    for item in scene.furniture:
        for a in range(dim):
            assert np.isclose(planes[a], item.box.lo[a]).any()
            assert np.isclose(planes[a], item.box.hi[a]).any()


def test_surface_absorption_by_area_2d() -> None:
    # L (1.6 x 1.2 minus 0.5 x 0.4) with a table (0.3 x 0.2, free) and a sofa in the corner.
    areas = wall_area_by_alpha(Scene.from_yaml(TINY[2]), 0.05)
    assert areas.keys() == {0.1, 0.2, 0.5}
    assert areas[0.1] == pytest.approx(2 * (0.3 + 0.2))  # table: its whole perimeter
    assert areas[0.5] == pytest.approx(0.5 + 0.25)  # sofa: the two sides facing the room
    assert areas[0.2] == pytest.approx(2 * (1.6 + 1.2) - 0.5 - 0.25)  # walls, inner ones too


def test_surface_absorption_per_side_2d() -> None:
    areas = wall_area_by_alpha(Scene.from_yaml(SCENES / "tiny-box-2d.yaml"), 0.05)
    assert areas == pytest.approx({0.05: 1.0, 0.2: 2 * 1.2 + 1.0})  # x1 is glass


def test_surface_absorption_by_area_3d() -> None:
    # 1.0 x 0.8 x 0.6 with the ceiling stepped down to 0.4 beyond x = 0.6; a 0.3 x 0.3 x 0.2
    # table on the floor. Carpet on the floor, plaster elsewhere (the step included).
    areas = wall_area_by_alpha(Scene.from_yaml(TINY[3]), 0.05)
    assert areas.keys() == {0.1, 0.2, 0.3}
    assert areas[0.1] == pytest.approx(0.3 * 0.3 + 4 * 0.3 * 0.2)  # table top and sides
    assert areas[0.3] == pytest.approx(1.0 * 0.8 - 0.3 * 0.3)  # floor around the table
    walls = 0.8 * 0.6 + 0.8 * 0.4 + 2 * (1.0 * 0.4 + 0.6 * 0.2)
    ceilings = 0.6 * 0.8 + 0.8 * 0.2 + 0.4 * 0.8  # top, the step's riser, the lowered part
    assert areas[0.2] == pytest.approx(walls + ceilings)


def test_surface_absorption_single_faces_3d() -> None:
    scene = Scene.from_yaml(SCENES / "furnished-room-3d.yaml")
    cases = [  # (point on a face, axis, side, expected alpha)
        ([1.3, 1.1, 0.8], 2, -1, 0.1),  # table top, solid below
        ([1.0, 1.1, 0.4], 0, 1, 0.1),  # table side, solid beyond +x
        ([1.0, 0.6, 0.5], 1, -1, 0.5),  # sofa front
        ([2.0, 1.6, 1.0], 0, 1, 0.1),  # cabinet front
        ([1.0, 1.8, 0.0], 2, -1, 0.3),  # floor
        ([1.0, 1.8, 2.0], 2, 1, 0.15),  # ceiling
        ([0.0, 1.8, 1.0], 0, -1, 0.2),  # wall x0
        ([2.4, 1.0, 1.0], 0, 1, 0.2),  # wall x1, beside the cabinet
        ([1.0, 2.0, 1.0], 1, 1, 0.2),  # wall y1
    ]
    for point, axis, side, alpha in cases:
        got = scene.surface_absorption(np.asarray([point]), axis, side)
        assert got.tolist() == [alpha], (point, axis, side)


@pytest.mark.parametrize("dim", [2, 3])
def test_voxel_scene_of_a_box_scene_is_the_same_air(dim: int) -> None:
    """A mask on a grid through every plane is the scene exactly: same is_air, same distance,
    and its spec survives JSON (what the service reads from a manifest)."""
    scene = Scene.from_spec(tiny_spec(dim))
    counts, centres = cell_grid(scene, 0.05)
    air = scene.is_air(centres).reshape(counts)
    labels = tuple(wall_faces(air, a).astype(np.uint8) for a in range(dim))
    vox = VoxelScene(
        "v", scene.size, air, {"plaster": 0.2}, ("plaster",), labels,
        source_region=scene.source_region, wall_margin=scene.wall_margin,
    )  # fmt: skip
    again = scene_from_spec(json.loads(json.dumps(vox.to_spec())))
    assert isinstance(again, VoxelScene)
    np.testing.assert_array_equal(again.air_mask, air)
    for a in range(dim):
        np.testing.assert_array_equal(again.face_labels[a], labels[a])
    pts = np.random.default_rng(1).uniform(-0.1, 1.7, size=(3000, dim))
    np.testing.assert_array_equal(again.is_air(pts), scene.is_air(pts))
    inside = scene.is_air(pts)
    np.testing.assert_allclose(again.wall_distance(pts)[inside], scene.wall_distance(pts)[inside])
    assert again.air_volume() == pytest.approx(scene.air_volume())
    # Points on a wall face are not air, as in a Room, whatever the round-off.
    on_faces = np.asarray([f.box.lo for f in scene.furniture] + [f.box.hi for f in scene.furniture])
    assert not again.is_air(on_faces).any() and not scene.is_air(on_faces).any()
    assert not again.is_air(np.asarray([[0.0] * dim, scene.size])).any()


def test_voxel_scene_refuses_no_air() -> None:
    air = np.zeros((4, 4), dtype=bool)
    labels = (np.zeros((5, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"scene key 'air'.*no air"):
        VoxelScene("v", (1.0, 1.0), air, {"m": 0.1}, ("m",), labels)


# --- the service: AcousticDomain reads the scene from a manifest -----------------------------


def scene_domain(spec: dict[str, Any]) -> AcousticDomain:
    return AcousticDomain.from_manifest({"scene": spec, "time_window": [0.0, 0.01]})


@pytest.mark.parametrize("dim", [2, 3])
def test_domain_refuses_points_in_furniture(dim: int) -> None:
    scene = Scene.from_spec(tiny_spec(dim))
    domain = scene_domain(json.loads(json.dumps(scene.to_spec())))
    assert domain.dim == dim and domain.wall_margin == scene.wall_margin
    table = scene.furniture[0].box
    in_table = (np.asarray(table.lo) + table.hi) / 2
    with pytest.raises(InvalidInputError, match="inside the table") as exc:
        domain.check_source(in_table)
    assert exc.value.field == "source" and exc.value.status_code == 422
    in_air = np.asarray(scene.source_region.hi)  # the region's far corner is in the air
    assert scene.is_air(in_air[None])[0]
    domain.check_source(in_air)
    with pytest.raises(InvalidInputError, match=r"receivers\[1\].*inside the table") as exc:
        domain.check_receivers(np.stack([in_air, in_table]))
    assert exc.value.field == "receivers"
    with pytest.raises(InvalidInputError, match=r"sources\[0\]") as exc:
        domain.check_sources(np.stack([in_table, in_air]), "sources")
    assert exc.value.field == "sources"
    # The inner wall of the L (2-D) or the step (3-D) is a wall, outside is outside.
    corner = np.asarray(scene.size) - 0.05
    with pytest.raises(InvalidInputError, match="inside a wall"):
        domain.check_source(corner)
    with pytest.raises(InvalidInputError, match="outside the room"):
        domain.check_source(np.full(dim, -0.1))


def test_domain_grid_drops_furniture_cells() -> None:
    scene = Scene.from_spec(tiny_spec(2))
    grid = scene_domain(scene.to_spec()).grid((32, 24))
    assert len(grid.points) == round(scene.air_volume() / 0.05**2)
    assert scene.is_air(grid.points).all()


def test_domain_without_scene_still_reads_room() -> None:
    domain = AcousticDomain.from_manifest(
        {"room": {"shape": "l_shape", "size": [1.2, 1.0], "cut": [0.4, 0.4]},
         "source_region": {"lo": [0.3, 0.3], "hi": [0.9, 0.7]}, "wall_margin": 0.25,
         "time_window": [0.0, 0.01]}
    )  # fmt: skip
    assert isinstance(domain.room, Room)
    with pytest.raises(InvalidInputError, match="inside a wall"):
        domain.check_source(np.asarray([1.1, 0.9]))
