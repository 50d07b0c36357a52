"""An impulse response as a WAV file: 16-bit PCM, mono, what any player or Web Audio decodes.

The samples use the whole 16-bit range: the signal's peak is sample 32767, and the pascals
that sample stands for travel with the answer (`X-Fieldserve-Full-Scale-Pa`), so the sound
can be played as it is and still be read back in pascals:
pressure = sample / 32767 * full_scale.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray
from starlette.responses import Response

from app.families import Prediction

MEDIA_TYPE = "audio/wav"
PEAK = 32767
_PCM, _CHANNELS, _BITS = 1, 1, 16
_FMT = struct.Struct("<4sI4s4sIHHIIHH4sI")

# The answer's headers, for the OpenAPI page: everything the JSON answer says besides arrays.
HEADERS: dict[str, str] = {
    "X-Fieldserve-Model": "The model's name.",
    "X-Fieldserve-Version": "The version that answered.",
    "X-Fieldserve-Cache": "hit, partial or miss (as in the JSON answer).",
    "X-Fieldserve-Warnings": "Codes of the answer's warnings, comma-separated (empty: none); "
    "ask for JSON to read them in words.",
    "X-Fieldserve-Sample-Rate-Hz": "48000.",
    "X-Fieldserve-Fmax-Hz": "The band limit: the model's fmax; nothing above it is in the sound.",
    "X-Fieldserve-Window-S": "The trained window the sound covers, 'start,stop' in seconds.",
    "X-Fieldserve-Full-Scale-Pa": "Pascals of sample 32767: pressure = sample / 32767 * this.",
}


def pcm16(signal: NDArray[np.floating], full_scale: float) -> NDArray[np.int16]:
    """Samples scaled so that `full_scale` pascals is 32767 (silence stays silence)."""
    if not full_scale > 0:
        return np.zeros(signal.shape, dtype=np.int16)
    scaled = np.rint(np.asarray(signal, dtype=np.float64) * (PEAK / full_scale))
    return np.clip(scaled, -PEAK, PEAK).astype(np.int16)


def encode(samples: NDArray[np.int16], rate: int) -> bytes:
    """RIFF/WAVE with one `fmt ` chunk (PCM, mono, 16 bits) and one `data` chunk."""
    data = samples.astype("<i2").tobytes()
    block = _CHANNELS * _BITS // 8
    header = _FMT.pack(
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        _CHANNELS,
        rate,
        rate * block,
        block,
        _BITS,
        b"data",
        len(data),
    )
    return header + data


def wav_response(prediction: Prediction, extra: Mapping[str, Any]) -> Response:
    """An impulse-response prediction (app/families/impulse.py) as a WAV answer."""
    fields = prediction.fields
    rate = int(fields["sample_rate_hz"])
    full_scale = float(fields["full_scale_pa"])
    t0, t1 = fields["window_s"]
    headers = {
        "X-Fieldserve-Model": str(extra["model"]),
        "X-Fieldserve-Version": str(extra["version"]),
        "X-Fieldserve-Cache": prediction.cache,
        "X-Fieldserve-Warnings": ",".join(n.code for n in prediction.warnings),
        "X-Fieldserve-Sample-Rate-Hz": str(rate),
        "X-Fieldserve-Fmax-Hz": f"{float(fields['fmax_hz']):g}",
        "X-Fieldserve-Window-S": f"{float(t0):g},{float(t1):g}",
        "X-Fieldserve-Full-Scale-Pa": repr(full_scale),
    }
    body = encode(pcm16(fields["signal"], full_scale), rate)
    return Response(body, media_type=MEDIA_TYPE, headers=headers)
