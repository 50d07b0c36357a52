"""Mesh scenes (training/acoustics/meshes.py): a room written as OBJ, STL or PLY voxelises to
the box scene cell for cell, its faces take their group's material, open meshes and airless
ones are refused, and the service checks points against the voxelised scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml

from app.errors import InvalidInputError
from app.families.acoustic_domain import AcousticDomain
from geometry import Scene, VoxelScene, scene_from_spec
from geometry.voxels import wall_faces
from training.acoustics.meshes import cell_centres, load_scene, voxelise_mesh

SCENES = Path(__file__).resolve().parents[1] / "configs" / "scenes"
GROUPS = {"walls": "plaster", "floor": "carpet", "ceiling": "ceiling_board", "table": "wood",
          "sofa": "upholstery", "cabinet": "wood"}  # fmt: skip


def small_furnished_room() -> Scene:
    """A box room with furniture touching the floor and the walls (coplanar faces, the hard
    case for ray parity), small enough to voxelise in a blink at 0.05 m."""
    spec = yaml.safe_load((SCENES / "furnished-room-3d.yaml").read_text())
    spec["size"] = [1.2, 1.0, 0.8]
    spec["furniture"] = [
        {"name": "table", "lo": [0.4, 0.4, 0.0], "hi": [0.8, 0.7, 0.35], "material": "wood"},
        {"name": "sofa", "lo": [0.0, 0.0, 0.0], "hi": [0.7, 0.25, 0.3], "material": "upholstery"},
        {"name": "cabinet", "lo": [1.0, 0.5, 0.0], "hi": [1.2, 1.0, 0.8], "material": "wood"},
    ]
    spec["source_region"] = {"lo": [0.2, 0.4, 0.45], "hi": [1.0, 0.8, 0.6]}
    spec["wall_margin"] = 0.1
    return Scene.from_spec(spec)


def room_mesh(scene: Scene) -> trimesh.Scene:
    """The scene's boundary as named groups: the room's box split into walls, floor and
    ceiling (open pieces that close only together), and one closed box per piece of furniture."""
    shell = trimesh.creation.box(bounds=[[0.0] * 3, list(scene.size)])
    normals = shell.face_normals
    out = trimesh.Scene()
    for group, pick in (
        ("floor", normals[:, 2] < -0.5),
        ("ceiling", normals[:, 2] > 0.5),
        ("walls", np.abs(normals[:, 2]) < 0.5),
    ):
        out.add_geometry(shell.submesh([np.flatnonzero(pick)], append=True), geom_name=group)
    for item in scene.furniture:
        box = trimesh.creation.box(bounds=[list(item.box.lo), list(item.box.hi)])
        out.add_geometry(box, geom_name=item.name)
    return out


def assert_same_absorption(vox: VoxelScene, scene: Scene, faces_of: VoxelScene) -> None:
    """The voxelised scene gives every wall face of `faces_of` the box scene's absorption."""
    for axis in range(3):
        points, sides = face_points(faces_of, axis)
        for side in (-1, 1):
            pts = points[sides == side]
            np.testing.assert_array_equal(
                vox.surface_absorption(pts, axis, side), scene.surface_absorption(pts, axis, side)
            )


def face_points(scene: VoxelScene, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the wall faces normal to `axis` and the side their solid is on."""
    faces = wall_faces(scene.air_mask, axis)
    idx = np.argwhere(faces)
    h = np.asarray(scene.spacing)
    below = idx.copy()
    below[:, axis] -= 1
    low_is_air = (below[:, axis] >= 0) & scene.air_mask[tuple(np.maximum(below, 0).T)]
    points = (idx + 0.5) * h
    points[:, axis] = idx[:, axis] * h[axis]
    return points, np.where(low_is_air, 1, -1)


@pytest.mark.parametrize("fmt", ["obj", "stl", "ply"])
def test_box_mesh_voxelises_to_the_box_scene(fmt: str, tmp_path: Path) -> None:
    scene = small_furnished_room()
    path = tmp_path / f"room.{fmt}"
    room_mesh(scene).export(path)
    vox = voxelise_mesh(
        path, scene.materials, spacing=0.05, groups=GROUPS, default_material="plaster"
    )
    assert vox.counts == (24, 20, 16) and vox.size == pytest.approx(scene.size)
    expected = scene.is_air(cell_centres(vox)).reshape(vox.counts)
    np.testing.assert_array_equal(vox.air_mask, expected)  # cell for cell
    assert vox.air_volume() == pytest.approx(scene.air_volume())
    assert vox.origin == (0.0, 0.0, 0.0) and vox.source == path.name


def test_obj_groups_give_each_face_its_material(tmp_path: Path) -> None:
    """Every wall face of the voxelised OBJ gets the absorption the box scene gives it."""
    scene = small_furnished_room()
    path = tmp_path / "room.obj"
    room_mesh(scene).export(path)
    vox = voxelise_mesh(path, scene.materials, spacing=0.05, groups=GROUPS)
    assert set(vox.face_materials) == {"plaster", "carpet", "ceiling_board", "wood", "upholstery"}
    assert_same_absorption(vox, scene, faces_of=vox)


def test_absorption_on_a_finer_solver_grid(tmp_path: Path) -> None:
    """A solver grid twice as fine still finds each face's material (from the nearest
    labelled face), so grid_planes is advice, not a requirement."""
    scene = small_furnished_room()
    path = tmp_path / "room.obj"
    room_mesh(scene).export(path)
    vox = voxelise_mesh(path, scene.materials, spacing=0.05, groups=GROUPS)
    fine = voxelise_mesh(path, scene.materials, spacing=0.025, groups=GROUPS)
    np.testing.assert_array_equal(vox.is_air(cell_centres(fine)).reshape(fine.counts),
                                  fine.air_mask)  # fmt: skip
    assert_same_absorption(vox, scene, faces_of=fine)


def test_open_mesh_refused(tmp_path: Path) -> None:
    box = trimesh.creation.box(bounds=[[0.0] * 3, [1.0, 0.8, 0.6]])
    box.update_faces(np.arange(len(box.faces)) != 3)  # one triangle gone: a hole
    path = tmp_path / "holey.stl"
    box.export(path)
    with pytest.raises(ValueError, match=r"holey\.stl.*not watertight: 3 open edge"):
        voxelise_mesh(path, {"plaster": 0.2}, spacing=0.1, default_material="plaster")


def test_mesh_without_air_refused(tmp_path: Path) -> None:
    # A room filled by a crate but for a 1 cm gap: no cell centre at 0.1 m is in the air.
    out = trimesh.Scene()
    out.add_geometry(trimesh.creation.box(bounds=[[0.0] * 3, [1.0] * 3]), geom_name="walls")
    out.add_geometry(trimesh.creation.box(bounds=[[0.01] * 3, [0.99] * 3]), geom_name="crate")
    path = tmp_path / "full.obj"
    out.export(path)
    with pytest.raises(ValueError, match=r"full\.obj: no cell centre is inside the mesh"):
        voxelise_mesh(path, {"plaster": 0.2}, spacing=0.1, default_material="plaster")


def test_unmapped_group_refused(tmp_path: Path) -> None:
    path = tmp_path / "room.obj"
    room_mesh(small_furnished_room()).export(path)
    with pytest.raises(ValueError, match="mesh group 'cabinet' has no material"):
        voxelise_mesh(path, {"plaster": 0.2}, spacing=0.1, groups={"walls": "plaster",
                      "floor": "plaster", "ceiling": "plaster", "table": "plaster",
                      "sofa": "plaster"})  # fmt: skip


def test_service_checks_points_against_a_mesh_scene(tmp_path: Path) -> None:
    """The spec (JSON, numpy only to read) is what a manifest carries; the service's domain
    refuses a source in the table and a receiver in the cabinet, naming the field."""
    scene = small_furnished_room()
    mesh_path = tmp_path / "room.obj"
    room_mesh(scene).export(mesh_path)
    scene_file = tmp_path / "room.yaml"
    scene_file.write_text(
        yaml.safe_dump(
            {"mesh": "room.obj", "spacing": 0.05, "materials": dict(scene.materials),
             "groups": GROUPS, "fmax": 500.0, "source_region": scene.source_region.to_spec(),
             "wall_margin": 0.1}
        )
    )  # fmt: skip
    vox = load_scene(scene_file)
    assert isinstance(vox, VoxelScene) and vox.fmax == 500.0
    spec = json.loads(json.dumps(vox.to_spec()))
    assert len(json.dumps(spec)) < 20_000  # compressed: a manifest stays small
    again = scene_from_spec(spec)
    assert isinstance(again, VoxelScene)
    np.testing.assert_array_equal(again.air_mask, vox.air_mask)

    domain = AcousticDomain.from_manifest({"scene": spec, "time_window": [0.0, 0.01]})
    table, cabinet = scene.furniture[0].box, scene.furniture[2].box
    in_table = (np.asarray(table.lo) + table.hi) / 2
    in_cabinet = (np.asarray(cabinet.lo) + cabinet.hi) / 2
    in_air = np.asarray([0.6, 0.6, 0.5])
    assert domain.check_source(in_air) == []  # in the region, 0.15 m from the table top
    with pytest.raises(InvalidInputError, match="inside a wall") as exc:
        domain.check_source(in_table)
    assert exc.value.field == "source" and exc.value.status_code == 422
    with pytest.raises(InvalidInputError, match=r"receivers\[2\]") as exc:
        domain.check_receivers(np.stack([in_air, in_air, in_cabinet]))
    assert exc.value.field == "receivers"
    # Distances are the voxelised walls' own: exact here, as the grid carries every plane.
    pts = np.random.default_rng(3).uniform(0.0, 1.0, size=(500, 3)) * scene.size
    air = scene.is_air(pts)
    np.testing.assert_array_equal(again.is_air(pts), air)
    np.testing.assert_allclose(again.wall_distance(pts)[air], scene.wall_distance(pts)[air])


def test_box_scene_file_loads_through_load_scene() -> None:
    scene = load_scene(SCENES / "furnished-room-3d.yaml")
    assert isinstance(scene, Scene) and scene.name == "furnished-room-3d"


def test_solver_hears_the_same_room_from_mesh_and_boxes(tmp_path: Path) -> None:
    """The FDTD on the voxelised OBJ and on the box scene: same grid, same wall faces with the
    same absorption, so the same pressure to round-off, and energy only ever lost."""
    from training.acoustics.fdtd import FDTD

    scene = small_furnished_room()
    path = tmp_path / "room.obj"
    room_mesh(scene).export(path)
    vox = voxelise_mesh(path, scene.materials, spacing=0.05, groups=GROUPS)
    source, receiver = np.asarray([[0.6, 0.6, 0.5]]), np.asarray([[0.3, 0.6, 0.5]])
    runs = []
    for room in (scene, vox):
        solver = FDTD(room, dx=0.05)
        result = solver.run(solver.gaussian_pulse(source, 0.1), 0.0005, 8, receiver, True)
        assert result.energy is not None
        energy = result.energy.numpy().ravel()
        assert (np.diff(energy) <= 1e-12 * energy[0]).all() and energy[-1] < 0.9 * energy[0]
        runs.append((solver.shape, solver.wall_admittance, result.pressure.numpy().ravel()))
    (shape_b, y_b, p_b), (shape_v, y_v, p_v) = runs
    assert shape_b == shape_v == (24, 20, 16)
    np.testing.assert_allclose(np.sort(y_v), np.sort(y_b), rtol=1e-12)
    np.testing.assert_allclose(p_v, p_b, rtol=0, atol=1e-12 * np.abs(p_b).max())
