"""The AirfRANS and VTK-folder importers, on tiny meshes written here."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import meshio
import numpy as np
import pytest
import pyvista as pv

from training.geometry_data.airfrans_import import airfoil_loop
from training.geometry_data.boundary import is_simple, signed_area
from training.geometry_data.format import GeometryDataError, load_split
from training.geometry_data.importers import register

# --------------------------------------------------------------------------------------------
# CLI


def run_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    register(sub)
    args = p.parse_args(argv)
    return int(args.fn(args, argv))


def expect_failure(argv: list[str], out: Path, *needles: str) -> str:
    """The import fails naming `needles`, and leaves no file in `out`."""
    with pytest.raises((SystemExit, GeometryDataError)) as info:
        run_cli(argv)
    message = str(info.value.code if isinstance(info.value, SystemExit) else info.value)
    for needle in needles:
        assert needle in message, message
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert left == [], left
    return message


# --------------------------------------------------------------------------------------------
# An AirfRANS-layout folder: an O-grid of quads around a NACA 4-digit section


def naca(m: float, p: float, t: float, n: int = 30) -> np.ndarray:
    """Closed-less surface (2n - 2, 2), counter-clockwise from the trailing edge, sharp TE."""
    beta = np.linspace(0.0, np.pi, n)
    x = 0.5 * (1 - np.cos(beta))
    yt = 5 * t * (0.2969 * np.sqrt(x) - 0.126 * x - 0.3516 * x**2 + 0.2843 * x**3 - 0.1036 * x**4)
    yc = (
        np.where(
            x < p, m / p**2 * (2 * p * x - x**2), m / (1 - p) ** 2 * (1 - 2 * p + 2 * p * x - x**2)
        )
        if m
        else 0 * x
    )
    upper = np.stack([x, yc + yt], axis=1)[::-1]  # TE -> LE
    lower = np.stack([x, yc - yt], axis=1)[1:-1]  # LE -> TE, both ends dropped (shared)
    upper[0] = (1.0, 0.0)
    return np.concatenate([upper, lower])


def field_values(pts: np.ndarray) -> dict[str, np.ndarray]:
    x, y = pts[:, 0], pts[:, 1]
    return {"u": 10 + x + 0.5 * y, "v": 0.3 * x - y, "p": x * y - 2.0, "nut": 1e-4 * (1 + x**2)}


def write_airfrans_sim(
    root: Path, name: str, *, drop: str = "", nan: bool = False, z: float = 0.0,
    empty_airfoil: bool = False, layers: int = 7,
) -> None:  # fmt: skip
    surf = naca(0.02 if "2412" in name else 0.0, 0.4, 0.12)
    k = len(surf)
    centre = np.array([0.5, 0.0])
    rings = [centre + (surf - centre) * (1 + 0.45 * j) for j in range(layers)]
    pts2 = np.concatenate(rings)  # (layers * k, 2)
    n = len(pts2)
    pts = np.concatenate([pts2, np.zeros((n, 1))], axis=1)
    pts[:, 2] = np.linspace(0.0, z, n)  # z: a 3-D mesh when nonzero
    i = np.arange(k)
    quads = np.concatenate(
        [np.stack([j * k + i, j * k + (i + 1) % k, (j + 1) * k + (i + 1) % k, (j + 1) * k + i], 1)
         for j in range(layers - 1)]
    )  # fmt: skip
    vals = field_values(pts2)
    U = np.stack([vals["u"], vals["v"], np.zeros(n)], axis=1)
    U[:k] = 0.0  # no slip: AirfRANS finds its surface nodes by U_x == 0
    p = vals["p"].copy()
    if nan:
        p[k + 3] = np.nan
    grid = pv.UnstructuredGrid({pv.CellType.QUAD: quads}, pts)
    data = {"U": U, "p": p, "nut": vals["nut"], "implicit_distance": -np.hypot(*(pts2 - centre).T)}
    for key, value in data.items():
        if key != drop:
            grid.point_data[key] = value
    folder = root / name
    folder.mkdir(parents=True)
    grid.save(folder / f"{name}_internal.vtu")
    if empty_airfoil:
        foil = pv.PolyData()
    else:
        lines = np.stack([np.full(k, 2), i, (i + 1) % k], axis=1).reshape(-1)
        foil = pv.PolyData(pts[:k].copy(), lines=lines)
        normal = np.roll(surf, -1, 0) - np.roll(surf, 1, 0)
        foil.point_data["Normals"] = np.stack([normal[:, 1], -normal[:, 0], 0 * normal[:, 0]], 1)
        foil.point_data["U"] = U[:k]
        foil.point_data["p"] = vals["p"][:k]
        foil.point_data["nut"] = vals["nut"][:k]
    foil.save(folder / f"{name}_aerofoil.vtp")
    pv.PolyData(pts[-k:].copy()).save(folder / f"{name}_freestream.vtp")


TRAIN = ["airFoil2D_SST_52.5_4.5_0.0_0.0_12.0", "airFoil2D_SST_40.0_-2.25_2.0_4.0_12.0_2412"]
TEST = ["airFoil2D_SST_61.0_8.0_0.0_0.0_12.0"]


def airfrans_root(tmp_path: Path, bad: dict[str, Any] | None = None) -> Path:
    root = tmp_path / "AirfRANS"
    for name in TRAIN + TEST:
        write_airfrans_sim(root, name, **(bad or {}) if name == TEST[0] else {})
    manifest = {"full_train": TRAIN, "full_test": TEST, "scarce_train": TRAIN[:1]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_airfrans_import(tmp_path: Path) -> None:
    root, out = airfrans_root(tmp_path), tmp_path / "data"
    assert run_cli(["import", "airfrans", "--src", str(root), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]
    train, test = load_split(out, "train"), load_split(out, "test")
    assert (len(train), len(test)) == (2, 1)
    assert (train.role, test.role) == ("train", "test")
    s = train.schema
    assert s.field_names == ("u", "v", "p", "nut")
    assert s.field_units == ("m/s", "m/s", "m^2/s^2", "m^2/s")
    assert s.condition_names == ("aoa_deg", "speed") and s.condition_units == ("deg", "m/s")
    assert s.length_unit == "m" and not s.box_is_domain
    assert s.box == ((-0.5, 1.5), (-0.75, 0.75))
    assert train.attrs["command"].startswith("python -m training import airfrans")
    np.testing.assert_allclose(train.conditions, [[4.5, 52.5], [-2.25, 40.0]])
    np.testing.assert_allclose(test.conditions, [[8.0, 61.0]])
    for split in (train, test):
        for i in range(len(split)):
            (loop,) = split.polylines(i)
            assert np.array_equal(loop[0], loop[-1]) and is_simple(loop)
            assert signed_area(loop[:-1]) > 0.05  # the whole section, counter-clockwise
            assert len(loop) == 2 * 30 - 2 + 1
            pts, sdf, flds = split.sample_points(i)
            assert (pts[:, 0] >= -0.5).all() and (pts[:, 0] <= 1.5).all()
            assert (np.abs(pts[:, 1]) <= 0.75).all()
            assert len(pts) > 58  # the surface and some rings, not the outer ones
            assert (sdf > -1e-6).all()
            on_surface = sdf < 1e-6
            assert on_surface.sum() == 58 and (sdf[~on_surface] > 0.01).all()
            want = field_values(pts.astype(np.float64))
            expected = np.stack([want[k] for k in ("u", "v", "p", "nut")], axis=1)
            expected[on_surface, :2] = 0.0
            np.testing.assert_allclose(flds, expected, rtol=1e-5, atol=1e-5)

    # again: the same config keeps the files; subsampled into another folder
    assert run_cli(["import", "airfrans", "--src", str(root), "--out", str(out)]) == 0
    out2 = tmp_path / "sub"
    argv = ["import", "airfrans", "--src", str(root), "--out", str(out2), "--points", "40",
            "--max-samples", "1", "--task", "scarce", "--seed", "3"]  # fmt: skip
    assert run_cli(argv) == 0
    sub = load_split(out2, "train")
    assert len(sub) == 1 and int(sub.n_points[0]) == 40
    np.testing.assert_allclose(sub.conditions, [[4.5, 52.5]])


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ({"drop": "nut"}, "nut"),
        ({"empty_airfoil": True}, "empty"),
        ({"nan": True}, "NaN"),
        ({"z": 0.5}, "3-D"),
    ],
)
def test_airfrans_bad_input(tmp_path: Path, bad: dict[str, Any], needle: str) -> None:
    # The bad simulation is the test split's: nothing of the train split may stay behind.
    root, out = airfrans_root(tmp_path, bad), tmp_path / "data"
    expect_failure(
        ["import", "airfrans", "--src", str(root), "--out", str(out)], out, TEST[0], needle
    )


def test_airfoil_loop_fallbacks() -> None:
    surf = naca(0.02, 0.4, 0.12)
    k = len(surf)
    # the trailing edge written twice (upper and lower end each carry it): merged, one loop
    pts = np.concatenate([surf, surf[:1]])
    lines = np.stack([np.full(k, 2), np.arange(k), np.r_[np.arange(1, k), k]], 1)
    loop = airfoil_loop(pts, lines, "here")
    assert len(loop) == k + 1 and is_simple(loop)
    # no line cells at all: ordered by angle about the centroid, from shuffled points
    loop = airfoil_loop(np.random.default_rng(0).permutation(surf), np.zeros(0), "here")
    assert len(loop) == k + 1 and is_simple(loop) and signed_area(loop[:-1]) > 0
    with pytest.raises(GeometryDataError, match="here: the airfoil surface is empty"):
        airfoil_loop(np.zeros((0, 2)), np.zeros(0), "here")


# --------------------------------------------------------------------------------------------
# A folder of VTU files: a square with a square hole, quads; one annulus of triangles


def square_with_hole(n: int = 17, size: float = 4.0, hole: tuple[float, float] = (1.5, 2.5)):
    g = np.linspace(0.0, size, n)
    X, Y = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), np.zeros(n * n)], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    quads = np.stack([idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]], axis=-1).reshape(
        -1, 4
    )
    centre = pts[quads].mean(axis=1)
    in_hole = ((centre[:, :2] > hole[0]) & (centre[:, :2] < hole[1])).all(axis=1)
    return pts, quads[~in_hole]


def vtk_values(pts: np.ndarray, load: float) -> dict[str, np.ndarray]:
    x, y = pts[:, 0], pts[:, 1]
    return {"U": np.stack([x + load, y * load, 0 * x], 1), "p": x * y + load}


def write_vtk_folder(folder: Path, n_files: int = 5) -> dict[str, float]:
    """Files with conditions in field data (written by VTK) or a sidecar (written by meshio)."""
    folder.mkdir(parents=True)
    loads = {}
    for f in range(n_files):
        pts, quads = square_with_hole()
        load = 1.0 + f
        vals = vtk_values(pts, load)
        name = f"case{f:02d}.vtu"
        loads[name] = load
        if f % 2:
            grid = pv.UnstructuredGrid({pv.CellType.QUAD: quads}, pts)
            grid.point_data.update(vals)
            grid.field_data["load"] = np.array([load])
            grid.field_data["angle"] = np.array([10.0 * f])
            grid.save(folder / name)
        else:
            meshio.write(folder / name, meshio.Mesh(pts, [("quad", quads)], point_data=vals))
            conds = {"conditions": {"load": load, "angle": 10.0 * f}}
            (folder / f"{name}.json").write_text(json.dumps(conds))
    return loads


VTK_ARGS = ["--fields", "p,u=U:0,v=U:1", "--field-units", "Pa,m/s,m/s",
            "--conditions", "load,aoa=angle", "--condition-units", "N,deg"]  # fmt: skip


def test_vtk_import(tmp_path: Path) -> None:
    src, out = tmp_path / "cases", tmp_path / "data"
    loads = write_vtk_folder(src)
    argv = ["import", "vtk", "--src", str(src), "--out", str(out), *VTK_ARGS,
            "--test-fraction", "0.4", "--seed", "1"]  # fmt: skip
    assert run_cli(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "train.h5"]
    train, test = load_split(out, "train"), load_split(out, "test")
    assert (len(train), len(test)) == (3, 2)
    s = train.schema
    assert s.field_names == ("p", "u", "v") and s.field_units == ("Pa", "m/s", "m/s")
    assert s.condition_names == ("load", "aoa") and s.condition_units == ("N", "deg")
    assert s.box == ((0.0, 4.0), (0.0, 4.0)) and s.box_is_domain
    seen = sorted(float(c[0]) for split in (train, test) for c in split.conditions)
    assert seen == sorted(loads.values())
    for split in (train, test):
        for i in range(len(split)):
            load, aoa = split.conditions[i]
            assert aoa == pytest.approx(10.0 * (load - 1.0))
            (hole,) = split.polylines(i)
            assert np.array_equal(hole[0], hole[-1]) and len(hole) == 4 * 4 + 1
            assert signed_area(hole[:-1]) == pytest.approx(1.0)
            pts, sdf, flds = split.sample_points(i)
            assert len(pts) == 17 * 17 - 3 * 3  # the nodes strictly inside the hole are unused
            assert (sdf > -1e-6).all()
            away = (np.abs(pts - 2.0).max(axis=1)) > 0.75
            assert (sdf[away] > 0.2).all()
            want = vtk_values(pts.astype(np.float64), float(load))
            expected = np.stack([want["p"], want["U"][:, 0], want["U"][:, 1]], axis=1)
            np.testing.assert_allclose(flds, expected, rtol=1e-6, atol=1e-6)


def test_vtk_annulus_box_is_not_domain(tmp_path: Path) -> None:
    src, out = tmp_path / "ring", tmp_path / "data"
    src.mkdir()
    k, layers = 24, 4
    theta = np.linspace(0, 2 * np.pi, k, endpoint=False)
    radii = np.linspace(0.5, 2.0, layers)
    pts = np.array([(r * np.cos(t), r * np.sin(t)) for r in radii for t in theta])
    i = np.arange(k)
    tris = []
    for j in range(layers - 1):
        a, b = j * k + i, j * k + (i + 1) % k
        c, d = (j + 1) * k + (i + 1) % k, (j + 1) * k + i
        tris += [np.stack([a, b, c], 1), np.stack([a, c, d], 1)]
    mesh = meshio.Mesh(pts, [("triangle", np.concatenate(tris))], point_data={"T": pts[:, 0]})
    for f in range(2):
        meshio.write(src / f"ring{f}.vtu", mesh)
        (src / f"ring{f}.vtu.json").write_text(json.dumps({"conditions": {"heat": f}}))
    argv = ["import", "vtk", "--src", str(src), "--out", str(out), "--fields", "T",
            "--conditions", "heat", "--test-fraction", "0", "--points", "50"]  # fmt: skip
    assert run_cli(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.h5"]
    train = load_split(out, "train")
    assert not train.schema.box_is_domain and train.schema.condition_names == ("heat",)
    np.testing.assert_array_equal(train.conditions[:, 0], [0.0, 1.0])
    np.testing.assert_allclose(train.schema.box, [[-2.0, 2.0], [-2.0, 2.0]])
    (body,) = train.polylines(0)
    assert np.hypot(*body[:-1].T) == pytest.approx(0.5)
    pts, sdf, flds = train.sample_points(0)
    assert len(pts) == 50 and (sdf > -1e-6).all()
    np.testing.assert_allclose(flds[:, 0], pts[:, 0], atol=1e-6)


def bad_vtk(folder: Path, kind: str) -> str:
    """Write a good folder, then spoil one file; returns the spoiled file's name."""
    write_vtk_folder(folder, n_files=3)
    name = "case01.vtu"
    pts, quads = square_with_hole()
    vals = vtk_values(pts, 2.0)
    if kind == "missing field":
        del vals["p"]
    elif kind == "nan field":
        vals["p"][5] = np.inf
    elif kind == "no hole":
        pts, quads = square_with_hole(hole=(9.0, 9.0))
        vals = vtk_values(pts, 2.0)
    elif kind == "3-D":
        pts = pts.copy()
        pts[:, 2] = pts[:, 0] * 0.1
    cells = [("quad", quads)]
    if kind == "3-D cells":
        cells.append(("tetra", np.array([[0, 1, 17, 18]])))
    meshio.write(folder / name, meshio.Mesh(pts, cells, point_data=vals))
    conds: dict[str, Any] = {"load": 2.0, "angle": 10.0}
    if kind == "nan condition":
        conds["load"] = float("nan")
    (folder / f"{name}.json").write_text(json.dumps({"conditions": conds}))
    return name


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("missing field", "no point-data array 'p'"),
        ("nan field", "NaN or infinity"),
        ("no hole", "no inner loop"),
        ("3-D", "3-D mesh"),
        ("3-D cells", "3-D mesh"),
        ("nan condition", "'load' is nan"),
    ],
)
def test_vtk_bad_input(tmp_path: Path, kind: str, needle: str) -> None:
    src, out = tmp_path / "cases", tmp_path / "data"
    name = bad_vtk(src, kind)
    argv = ["import", "vtk", "--src", str(src), "--out", str(out), *VTK_ARGS]
    expect_failure(argv, out, name, needle)


def test_vtk_line_cells_as_bodies(tmp_path: Path) -> None:
    """--boundary lines: the body is meshed too and tagged by line cells around it."""
    src, out = tmp_path / "cases", tmp_path / "data"
    src.mkdir()
    pts, quads = square_with_hole(hole=(9.0, 9.0))  # no hole: the inside is meshed
    idx = np.arange(17 * 17).reshape(17, 17)
    ring = [idx[6, j] for j in range(6, 10)] + [idx[i, 10] for i in range(6, 10)]
    ring += [idx[10, j] for j in range(10, 6, -1)] + [idx[i, 6] for i in range(10, 6, -1)]
    lines = np.stack([ring, np.roll(ring, -1)], axis=1)
    vals = vtk_values(pts, 1.0)
    for f in range(2):
        mesh = meshio.Mesh(pts, [("quad", quads), ("line", lines)], point_data=vals)
        meshio.write(src / f"c{f}.vtu", mesh)
        (src / f"c{f}.vtu.json").write_text(json.dumps({"conditions": {"load": 1.0}}))
    argv = ["import", "vtk", "--src", str(src), "--out", str(out), "--fields", "p",
            "--conditions", "load", "--boundary", "lines", "--test-fraction", "0.5"]  # fmt: skip
    assert run_cli(argv) == 0
    train = load_split(out, "train")
    assert len(train) == 1 and train.schema.box_is_domain
    (body,) = train.polylines(0)
    assert len(body) == 17 and signed_area(body[:-1]) == pytest.approx(1.0)
    pts_out, sdf, _ = train.sample_points(0)
    assert len(pts_out) == 17 * 17 - 9 and (sdf > -1e-6).all()


def test_vtk_refuses_other_config_and_garbage(tmp_path: Path) -> None:
    src, out = tmp_path / "cases", tmp_path / "data"
    write_vtk_folder(src, n_files=3)
    argv = ["import", "vtk", "--src", str(src), "--out", str(out), *VTK_ARGS]
    assert run_cli(argv) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert run_cli(argv) == 0  # the same import again: kept as it is
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    with pytest.raises(FileExistsError, match="different config"):
        run_cli([*argv, "--seed", "7"])
    (src / "zz.vtu").write_text("not a mesh")
    out2 = tmp_path / "data2"
    expect_failure(
        ["import", "vtk", "--src", str(src), "--out", str(out2), *VTK_ARGS],
        out2,
        "zz.vtu",
        "meshio cannot read it",
    )
