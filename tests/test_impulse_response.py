"""Impulse responses: the pressure /predict answers at the model's own times, resampled
band-limited to 48 kHz, as WAV or arrays; the direct sound of a shipped room where physics
puts it; the same refusals as /predict."""

from __future__ import annotations

import io
import json
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers_serving import air_receivers, by_hand, manifest_of, sources_in_region

from app.bundle import decode
from app.main import create_app
from app.resample import BandLimited
from app.settings import Settings

RATE = 48_000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client(tiny_acoustic: Any) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=tiny_acoustic.models))) as c:
        yield c


@pytest.fixture(scope="module")
def manifest(tiny_acoustic: Any) -> dict[str, Any]:
    return manifest_of(tiny_acoustic.version_dir)


@pytest.fixture(scope="module")
def body(manifest: dict[str, Any]) -> dict[str, Any]:
    (source,) = sources_in_region(manifest, 1)
    return {"source": source, "listener": air_receivers(manifest, 1, seed=3)[0].tolist()}


def url(tiny_acoustic: Any, version: str | None = None) -> str:
    pinned = f"/versions/{version}" if version else ""
    return f"/v1/models/{tiny_acoustic.name}{pinned}/impulse-response"


def model_times(manifest: dict[str, Any]) -> np.ndarray:
    domain = manifest["domain"]
    t0, t1 = domain["time_window"]
    dt = domain["trained_time_step"]
    return t0 + dt * np.arange(round((t1 - t0) / dt) + 1)


def test_wav_is_16_bit_mono_48_khz_over_the_trained_window(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], body: dict[str, Any]
) -> None:
    r = client.post(url(tiny_acoustic), json=body, headers={"Accept": "audio/wav"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    t0, t1 = manifest["domain"]["time_window"]
    n = round((t1 - t0) * RATE)  # the window x 48 kHz: 288 samples for 6 ms
    # The header, field by field (RIFF, a 16-byte PCM fmt chunk, then the data chunk).
    riff, size, wave_id, fmt, fmt_size, pcm, channels, rate, byte_rate, block, bits = (
        struct.unpack_from("<4sI4s4sIHHIIHH", r.content)
    )
    data_id, data_size = struct.unpack_from("<4sI", r.content, 36)
    assert (riff, wave_id, fmt, data_id) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, pcm, channels, rate, byte_rate, block, bits) == (
        16,
        1,
        1,
        RATE,
        2 * RATE,
        2,
        16,
    )
    assert data_size == 2 * n and size == 36 + data_size == len(r.content) - 8
    # Python's own reader agrees.
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            1,
            2,
            RATE,
            n,
        )
        samples = np.frombuffer(w.readframes(n), "<i2")
    h = r.headers
    assert float(h["x-fieldserve-fmax-hz"]) == manifest["domain"]["fmax"]
    assert [float(v) for v in h["x-fieldserve-window-s"].split(",")] == [t0, t1]
    assert h["x-fieldserve-sample-rate-hz"] == str(RATE)
    assert h["x-fieldserve-model"] == tiny_acoustic.name and h["x-fieldserve-version"] == "1"
    # The whole 16-bit range is used, and the scale reads the samples back in pascals.
    full_scale = float(h["x-fieldserve-full-scale-pa"])
    assert np.abs(samples).max() == 32767 and full_scale > 0
    signal = np.asarray(client.post(url(tiny_acoustic), json=body).json()["signal"])
    np.testing.assert_allclose(samples / 32767 * full_scale, signal, atol=full_scale / 32767)


def test_the_signal_is_predict_at_the_model_times_resampled_band_limited(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], body: dict[str, Any]
) -> None:
    ir = client.post(url(tiny_acoustic), json=body).json()
    times = model_times(manifest)
    np.testing.assert_allclose(ir["times"], times, rtol=0, atol=1e-12)
    assert ir["fmax_hz"] == manifest["domain"]["fmax"] and ir["sample_rate_hz"] == RATE
    assert ir["window_s"] == manifest["domain"]["time_window"]
    # The pressure is /predict's for that receiver at those times, and the graphs' by hand.
    predict = {"source": body["source"], "receivers": [body["listener"]], "times": ir["times"]}
    p = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=predict).json()
    pressure = np.asarray(p["pressure"][0])
    np.testing.assert_array_equal(ir["pressure"], pressure)
    hand = by_hand(tiny_acoustic.version_dir, body["source"], [body["listener"]], times)[0]
    np.testing.assert_allclose(pressure, hand, rtol=1e-5, atol=1e-6 * np.abs(hand).max())

    # An independent resampler: the even extension's spectrum cut at fmax, zero-padded to
    # 48 kHz and transformed back (its period, 2 x the window, holds a whole number of samples).
    fmax, n = manifest["domain"]["fmax"], len(ir["signal"])
    ext = np.concatenate([pressure, pressure[-2:0:-1]])
    spectrum = np.fft.rfft(ext)
    dt = times[1] - times[0]
    spectrum[np.fft.rfftfreq(ext.size, dt) > fmax] = 0
    fine = round(ext.size * dt * RATE)
    want = np.fft.irfft(spectrum, fine) * fine / ext.size
    signal = np.asarray(ir["signal"])
    scale = np.abs(want).max()
    np.testing.assert_allclose(signal, want[:n], rtol=0, atol=2e-6 * scale)
    assert n == round((times[-1] - times[0]) * RATE)

    # At the model's own times the signal is /predict's pressure less what lies above fmax:
    # no more different from it than that band holds.
    step = round(dt * RATE)
    at_model = signal[::step]
    above = np.fft.irfft(np.fft.rfft(ext) - spectrum, ext.size)[: at_model.size]
    np.testing.assert_allclose(at_model - pressure[: at_model.size], -above, atol=2e-6 * scale)
    rms = np.sqrt(np.mean((at_model - pressure[: at_model.size]) ** 2))
    assert rms <= 1.1 * np.sqrt(np.mean(above**2)) + 1e-9


def test_it_goes_through_the_caches_of_predict(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], body: dict[str, Any]
) -> None:
    listener = air_receivers(manifest, 2, seed=11)[1].tolist()
    _, first, moved = sources_in_region(manifest, 3)  # the first is `body`'s
    a = client.post(url(tiny_acoustic), json={"source": first, "listener": listener})
    assert a.json()["cache"] == "miss"
    # A moved source reuses the listener's trunk factor: only the branch runs.
    b = client.post(url(tiny_acoustic), json={"source": moved, "listener": listener})
    assert b.json()["cache"] == "partial"
    same = client.post(
        url(tiny_acoustic),
        json={"source": moved, "listener": listener},
        headers={"Accept": "audio/wav"},
    )
    assert same.headers["x-fieldserve-cache"] == "hit"
    # /predict at the listener over the model's times shares the same factors.
    predict = {"source": first, "receivers": [listener], "times": model_times(manifest).tolist()}
    p = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=predict)
    assert p.json()["cache"] == "partial"


def test_the_binary_bundle_holds_the_arrays(
    client: TestClient, tiny_acoustic: Any, body: dict[str, Any]
) -> None:
    r = client.post(
        url(tiny_acoustic), json=body, headers={"Accept": "application/x-fieldserve-arrays"}
    )
    assert r.status_code == 200
    bundle = decode(r.content)
    header, arrays = bundle.meta, bundle.arrays
    ir = client.post(url(tiny_acoustic), json=body).json()
    for name in ("times", "pressure", "signal"):
        # JSON spells a float32 by its shortest repr: read back as float32, it is exact.
        np.testing.assert_array_equal(arrays[name], np.asarray(ir[name], arrays[name].dtype))
    assert arrays["signal"].dtype == np.float32 and arrays["pressure"].dtype == np.float32
    for name in ("fmax_hz", "window_s", "sample_rate_hz", "full_scale_pa", "model", "version"):
        assert header[name] == ir[name]


def test_pinned_version_and_refusals(
    client: TestClient, tiny_acoustic: Any, manifest: dict[str, Any], body: dict[str, Any]
) -> None:
    pinned = client.post(url(tiny_acoustic, "1"), json=body)
    assert pinned.status_code == 200
    assert (
        pinned.json()["pressure"] == client.post(url(tiny_acoustic), json=body).json()["pressure"]
    )
    assert client.post(url(tiny_acoustic, "7"), json=body).status_code == 404
    assert client.post("/v1/models/nope/impulse-response", json=body).status_code == 404
    r = client.post(url(tiny_acoustic), json=body, headers={"Accept": "text/html"})
    assert r.status_code == 406 and "audio/wav" in r.json()["error"]


def wall_and_outside(dim: int) -> tuple[list[float], list[float]]:
    """A point inside the tiny room's solid (the L's cut-out, the pillar) and one outside."""
    if dim == 2:
        return [1.0, 0.8], [1.5, 0.5]
    return [0.9, 0.1, 0.4], [0.5, 0.5, 1.2]


@pytest.mark.parametrize("where", ["wall", "outside"])
def test_a_listener_in_a_wall_or_outside_the_room_is_refused_like_predict(
    client: TestClient, tiny_acoustic: Any, body: dict[str, Any], where: str
) -> None:
    wall, outside = wall_and_outside(tiny_acoustic.dim)
    point = wall if where == "wall" else outside
    r = client.post(url(tiny_acoustic), json={**body, "listener": point})
    assert r.status_code == 422 and r.json()["field"] == "listener", r.text
    words = "inside a wall" if where == "wall" else "outside the room"
    assert words in r.json()["error"]
    # /predict refuses the same point as a receiver, in the same words.
    predict = {"source": body["source"], "receivers": [point], "times": [0.001]}
    p = client.post(f"/v1/models/{tiny_acoustic.name}/predict", json=predict)
    assert p.status_code == 422 and p.json()["field"] == "receivers" and words in p.json()["error"]
    # A source there gets /predict's very answer.
    src = client.post(url(tiny_acoustic), json={**body, "source": point})
    ps = client.post(
        f"/v1/models/{tiny_acoustic.name}/predict",
        json={**predict, "source": point, "receivers": [body["listener"]]},
    )
    assert src.status_code == ps.status_code == 422
    assert src.json() == ps.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"listener": [0.5]}, "listener"),
        ({"listener": [0.5, 0.5, 0.5, 0.5]}, "listener"),
        ({"source": [0.5]}, "source"),
        ({"listener": None}, "listener"),
        ({"listener": [float("nan"), 0.5]}, "listener"),
        ({"receivers": [[0.5, 0.5]]}, "receivers"),
    ],
)
def test_malformed_bodies_name_the_field(
    client: TestClient, tiny_acoustic: Any, body: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    payload = json.dumps({**body, **change})  # NaN as Python writes it: refused by name
    r = client.post(
        url(tiny_acoustic), content=payload, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["field"] == field, r.text


# -- the resampler on its own -------------------------------------------------------------


def test_the_resampler_keeps_the_band_and_removes_what_is_above() -> None:
    dt, n = 0.0005, 101
    t = dt * np.arange(n)
    low = np.cos(2 * np.pi * 200 * t)  # a whole number of periods in 2 x the window
    high = 0.3 * np.cos(2 * np.pi * 700 * t)
    r = BandLimited(n, dt, 500.0, RATE, 2400)
    np.testing.assert_allclose(r(low + high), np.cos(2 * np.pi * 200 * r.times), atol=1e-6)
    # With the whole band kept the series passes through every sample.
    full = BandLimited(n, dt, 1 / (2 * dt), RATE, 2400)
    x = np.random.default_rng(0).normal(size=n)
    np.testing.assert_allclose(full.at(x, t), x, atol=1e-9)
    # Long windows are evaluated block by block: the same numbers.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("app.resample._TABLE_VALUES", 0)
        blocks = BandLimited(n, dt, 500.0, RATE, 2400)
    assert blocks.table is None
    np.testing.assert_allclose(blocks(x), r(x), rtol=0, atol=1e-6)


# -- physics on a shipped room ------------------------------------------------------------

FURNISHED = ROOT / "models" / "acoustics-furnished-3d"


@pytest.fixture(scope="module")
def furnished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    if not FURNISHED.is_dir():
        pytest.skip("the shipped acoustics-furnished-3d is not in models/")
    root = tmp_path_factory.mktemp("shipped")
    (root / FURNISHED.name).symlink_to(FURNISHED)
    with TestClient(create_app(Settings(model_dir=root))) as c:
        yield c


def test_the_direct_sound_arrives_at_r_over_c_in_the_furnished_room(
    furnished: TestClient,
) -> None:
    domain = furnished.get(f"/v1/models/{FURNISHED.name}").json()["domain"]
    c, sigma = domain["c"], domain["source_sigma"]
    # 1 m apart at 1.5 m height: the nearest surface is the ceiling (0.5 m up), so the first
    # reflection travels sqrt(1 + 1) m; the table top (0.7 m down) and walls are farther.
    source, listener = [0.7, 1.0, 1.5], [1.7, 1.0, 1.5]
    r = float(np.linalg.norm(np.subtract(source, listener)))
    first_reflection = float(np.hypot(r, 2 * (2.0 - 1.5)))
    ir = furnished.post(
        f"/v1/models/{FURNISHED.name}/impulse-response",
        json={"source": source, "listener": listener},
    ).json()
    assert ir["warnings"] == []
    signal = np.asarray(ir["signal"])
    t = ir["window_s"][0] + np.arange(signal.size) / ir["sample_rate_hz"]
    before_reflection = t < first_reflection / c
    peak = int(np.argmax(np.abs(signal) * before_reflection))
    # The loudest moment before any reflection can arrive is the direct sound, within the
    # pulse width of r / c (the Gaussian's compression lobe leads r / c by sigma / (sqrt 2 c)).
    assert abs(t[peak] - r / c) <= sigma / c, (t[peak], r / c, sigma / c)
    assert signal[peak] > 0  # compression first
    # Causality: before the pulse's front can arrive the room is all but quiet.
    quiet = t < (r - 2 * sigma) / c
    assert np.abs(signal[quiet]).max() < 0.2 * signal[peak]
