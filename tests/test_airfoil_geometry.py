"""Airfoil geometry: NACA sections, slotted flaps, signed distances and point sampling."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from geometry.airfoils import (
    BOX,
    encoder_points,
    field_points,
    inside,
    naca4,
    parse_naca,
    polygon_area,
    signed_distance,
    two_element,
)
from geometry.polylines import surface_features, unsigned_distance


def _circle(
    radius: float, centre: tuple[float, float], n: int, clockwise: bool = True
) -> np.ndarray:
    phi = np.linspace(0.0, -2 * np.pi if clockwise else 2 * np.pi, n + 1)
    poly = np.stack([centre[0] + radius * np.cos(phi), centre[1] + radius * np.sin(phi)], axis=1)
    poly[-1] = poly[0]
    return poly


def _inside_reference(points: np.ndarray, polylines: list[np.ndarray]) -> np.ndarray:
    """An independent point-in-polygon test (matplotlib's), for checking ours."""
    return np.any([MplPath(p).contains_points(points) for p in polylines], axis=0)


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Brute-force polygon clearance on finely resampled outlines."""

    def dense(p: np.ndarray) -> np.ndarray:
        w = np.linspace(0, 1, 20, endpoint=False)
        return (p[:-1, None] + w[None, :, None] * (p[1:] - p[:-1])[:, None]).reshape(-1, 2)

    da, db = dense(a), dense(b)
    d = np.linalg.norm(da[:, None] - db[None], axis=-1)
    return float(d.min())


@pytest.mark.parametrize(
    ("code", "expected"),
    [("2412", (0.02, 0.4, 0.12)), ("NACA 0012", (0.0, 0.0, 0.12)), ("naca4415", (0.04, 0.4, 0.15))],
)
def test_parse_naca(code: str, expected: tuple[float, float, float]) -> None:
    assert parse_naca(code) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("241", "3 digits"),
        ("23012", "5 digits"),
        ("24a2", "not of the form"),
        ("2012", "no camber position"),
        ("0412", "no camber"),
        ("2400", "zero thickness"),
    ],
)
def test_parse_naca_errors_name_the_problem(code: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_naca(code)


def test_naca_section_shape() -> None:
    poly = naca4("0012", 200)
    assert poly.shape == (201, 2)
    np.testing.assert_array_equal(poly[0], poly[-1])  # closed, sharp trailing edge
    np.testing.assert_allclose(poly[0], [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(poly[100], [0.0, 0.0], atol=1e-12)  # leading edge is a vertex
    assert polygon_area(poly) < 0  # clockwise: TE -> lower surface -> LE -> upper surface
    assert poly[1:100, 1].max() < 0 < poly[101:200, 1].min()
    # Maximum thickness 12% of the chord, at 30% chord; area 0.685 t c for NACA 00xx.
    thick = 2 * poly[101:200, 1]
    assert thick.max() == pytest.approx(0.12, rel=2e-3)
    assert poly[101 + int(np.argmax(thick)), 0] == pytest.approx(0.30, abs=0.02)
    assert abs(polygon_area(poly)) == pytest.approx(0.685 * 0.12, rel=0.02)
    # Cosine spacing: panels at the edges are much shorter than mid-chord ones.
    length = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    assert length[99] < 0.25 * length[50] and length[0] < 0.5 * length[50]
    with pytest.raises(ValueError, match="even"):
        naca4("0012", 121)


def test_cambered_section_mean_line() -> None:
    poly = naca4((0.05, 0.35, 0.10), 400)
    lower, upper = poly[:201][::-1], poly[200:]  # both LE -> TE
    x = np.linspace(0.02, 0.98, 200)
    mean = 0.5 * (np.interp(x, lower[:, 0], lower[:, 1]) + np.interp(x, upper[:, 0], upper[:, 1]))
    assert mean.max() == pytest.approx(0.05, rel=0.01)
    assert x[np.argmax(mean)] == pytest.approx(0.35, abs=0.02)


@pytest.mark.parametrize(
    ("deflection", "gap", "overlap"),
    [
        (0.0, 0.01, 0.0),
        (10.0, 0.02, 0.02),
        (20.0, 0.04, 0.03),
        (-5.0, 0.015, 0.01),
        (35.0, 0.005, 0.05),
    ],
)
def test_two_element_clearance_equals_gap(deflection: float, gap: float, overlap: float) -> None:
    main, flap = two_element("4418", "2415", 0.3, deflection, gap, 80, overlap=overlap)
    assert main.shape == flap.shape == (81, 2)
    assert main[:, 0].max() == pytest.approx(0.7)  # main chord = 1 - flap chord
    # Deflection positive = flap trailing edge down, rotated about the flap leading edge.
    le, te = flap[40], flap[0]
    assert np.degrees(np.arctan2(le[1] - te[1], te[0] - le[0])) == pytest.approx(deflection)
    assert np.linalg.norm(te - le) == pytest.approx(0.3)
    assert _gap(main, flap) == pytest.approx(gap, rel=1e-3)
    # Never overlapping: no vertex of either element inside the other (independent test).
    assert not _inside_reference(flap, [main]).any()
    assert not _inside_reference(main, [flap]).any()


def test_signed_distance_of_a_circle() -> None:
    centre, radius = (0.5, 0.1), 0.3
    poly = _circle(radius, centre, 2000)
    rng = np.random.default_rng(0)
    pts = rng.uniform([-0.5, -0.75], [1.5, 0.75], size=(2000, 2))
    exact = np.linalg.norm(pts - centre, axis=1) - radius
    sdf = signed_distance(pts, [poly])
    # The inscribed 2000-gon sags radius * (1 - cos(pi / 2000)) = 3.7e-7 from the circle.
    np.testing.assert_allclose(sdf, exact, atol=4e-7)
    assert ((sdf < 0) == (exact < 0)).all()
    # Either orientation, closed or not, gives the same answer (to the float32 search's
    # rounding: of two segments that near in distance, either may be the one found).
    np.testing.assert_allclose(signed_distance(pts, [poly[::-1]]), sdf, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(signed_distance(pts, [poly[:-1]]), sdf)


@pytest.mark.parametrize("kind", ["single", "two"])
@pytest.mark.parametrize("n", [1, 2000, 20_000])
@pytest.mark.parametrize("scale", [1.0, 1000.0], ids=["chords", "mm-far"])
def test_signed_distance_equals_the_search_over_every_segment(
    kind: str, n: int, scale: float
) -> None:
    # The pruned search (bounding circles, float32) against every segment in float64 and an
    # even-odd inside test, on points spread over the box and crowded at the walls; also in
    # millimetres far from the origin, where float32 coordinates alone would lose 1e-4.
    bodies = (
        [naca4("2412", 160)]
        if kind == "single"
        else two_element("2412", "0012", 0.3, 15.0, 0.02, 160)
    )
    rng = np.random.default_rng(n)
    box = rng.uniform([-0.5, -0.75], [1.5, 0.75], size=(n - n // 2, 2))
    surface = np.concatenate(bodies)
    near = surface[rng.integers(0, len(surface), n // 2)] + rng.normal(0.0, 0.01, (n // 2, 2))
    shift = np.array([5.0, -3.0]) * scale if scale > 1 else 0.0
    bodies = [scale * body + shift for body in bodies]
    pts = scale * np.concatenate([box, near]) + shift
    reference = np.where(
        inside(pts, bodies), -unsigned_distance(pts, bodies), unsigned_distance(pts, bodies)
    )
    got = signed_distance(pts, bodies)
    np.testing.assert_allclose(got, reference, rtol=0, atol=2e-7 * scale)
    np.testing.assert_array_equal(got < 0, reference < 0)


@pytest.mark.parametrize("orientation", [1, -1], ids=["ccw", "cw"])
def test_surface_features_curvature_and_normal(orientation: int) -> None:
    # An ellipse x = a cos t, y = b sin t: curvature a / b^2 at the ends of the major axis and
    # b / a^2 at the ends of the minor one, 1 / r on a circle, either orientation; the normal
    # is the radial direction on a circle to within half a segment's turn; the first column
    # is the signed distance itself.
    a, b, centre = 0.3, 0.15, np.array([0.5, 0.5])
    t = np.linspace(0.0, 2.0 * np.pi, 513)[:-1]
    ellipse = (centre + np.stack([a * np.cos(t), b * np.sin(t)], axis=1))[::orientation]
    ends = centre + np.array([[a + 0.05, 0.0], [-a - 0.02, 0.0], [0.0, b + 0.1], [0.0, -b - 0.03]])
    f = surface_features(ends, [ellipse])
    np.testing.assert_allclose(f[:, 1], [a / b**2] * 2 + [b / a**2] * 2, rtol=2e-3)
    np.testing.assert_allclose(f[:, 2:], [[1, 0], [-1, 0], [0, 1], [0, -1]], atol=1e-6)
    n = 512
    circle = _circle(0.2, (0.4, 0.6), n)[::orientation]
    rng = np.random.default_rng(2)
    pts = rng.uniform([0.0, 0.0], [1.0, 1.0], size=(3000, 2))
    radial = pts - (0.4, 0.6)
    radius = np.linalg.norm(radial, axis=1)
    pts, radial = pts[radius > 0.05], (radial / radius[:, None])[radius > 0.05]
    f = surface_features(pts, [circle])
    np.testing.assert_array_equal(f[:, 0], signed_distance(pts, [circle]))
    np.testing.assert_allclose(f[:, 1], 5.0, rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(f[:, 2:], axis=1), 1.0, rtol=1e-12)
    angle = np.arccos(np.clip(np.sum(f[:, 2:] * radial, axis=1), -1.0, 1.0))
    assert angle.max() <= np.pi / n + 1e-9


def test_signed_distance_sign_matches_independent_inside_test() -> None:
    bodies = two_element("2412", "0012", 0.3, 15.0, 0.02, 120)
    rng = np.random.default_rng(1)
    pts = rng.uniform([-0.1, -0.2], [1.1, 0.2], size=(20000, 2))
    sdf = signed_distance(pts, bodies)
    ref = _inside_reference(pts, bodies)
    assert ref.sum() > 500  # the check is not vacuous
    np.testing.assert_array_equal(sdf < 0, ref)
    np.testing.assert_array_equal(inside(pts, bodies), ref)


@pytest.mark.parametrize("kind", ["single", "two"])
def test_field_points_never_inside_a_body(kind: str) -> None:
    bodies = (
        [naca4("4412", 160)]
        if kind == "single"
        else two_element("4412", "0015", 0.3, 20.0, 0.01, 160)
    )
    pts = field_points(bodies, 4000, BOX, (0.005, 0.25), 0.5, np.random.default_rng(2))
    assert pts.shape == (4000, 2)
    assert not _inside_reference(pts, bodies).any()
    sdf = signed_distance(pts, bodies)
    assert sdf.min() >= 0.005
    assert ((pts >= [BOX[0][0], BOX[1][0]]) & (pts <= [BOX[0][1], BOX[1][1]])).all()
    # Half the points cluster at the wall (log-uniform offsets): median offset ~ 0.035.
    assert np.median(sdf[:2000]) < 0.06 < np.median(sdf[2000:])
    assert (sdf < 0.02).sum() > 700  # 2000 ln 4 / ln 50 = 709 near-wall ones alone
    again = field_points(bodies, 4000, BOX, (0.005, 0.25), 0.5, np.random.default_rng(2))
    np.testing.assert_array_equal(pts, again)


def test_encoder_points_are_deterministic_and_signed() -> None:
    bodies = two_element("2412", "0012", 0.3, 10.0, 0.02, 120)
    pts, sdf = encoder_points(bodies, 1024, BOX)
    again, sdf_again = encoder_points([b.copy() for b in bodies], 1024, BOX)
    np.testing.assert_array_equal(pts, again)
    np.testing.assert_array_equal(sdf, sdf_again)
    assert not np.array_equal(encoder_points(bodies, 1024, BOX, seed=1)[0], pts)
    assert pts.shape == (1024, 2) and sdf.shape == (1024,)
    np.testing.assert_allclose(sdf, signed_distance(pts, bodies))
    assert (sdf < 0).mean() > 0.15  # both signs are well represented
    assert (np.abs(sdf) < 0.02).mean() > 0.2  # and the zero level set


def test_nan_padding_is_ignored() -> None:
    """The dataset pads single-element samples with an all-NaN second element."""
    body = naca4("2412", 60)
    surfaces = np.stack([body, np.full_like(body, np.nan)])  # (2, K+1, 2) as stored
    pts = np.random.default_rng(3).uniform(-0.5, 1.5, (200, 2))
    np.testing.assert_array_equal(
        signed_distance(pts, list(surfaces)), signed_distance(pts, [body])
    )
    with pytest.raises(ValueError, match="padding"):
        signed_distance(pts, [surfaces[1]])
