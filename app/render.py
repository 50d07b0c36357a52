"""A prediction onto the wire, in the format the client's Accept header asks for.

application/json (default, also */*)          orjson straight from the numpy arrays
application/x-fieldserve-arrays               the FSA1 bundle (app/bundle.py): the same
application/octet-stream (alias)              JSON fields as a header, arrays raw
audio/wav (impulse responses only)            16-bit PCM at 48 kHz (app/wav.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal, TypeVar

from starlette.responses import Response

from app.bundle import MEDIA_TYPE, Bundle, encode, split
from app.codecs import OrjsonResponse
from app.errors import NotAcceptableError
from app.families import Prediction

Format = Literal["json", "arrays"]
_FORMATS: dict[str, Format] = {
    "application/json": "json",
    "application/*": "json",
    "*/*": "json",
    MEDIA_TYPE: "arrays",
    "application/octet-stream": "arrays",
}
AudioFormat = Literal["json", "arrays", "wav"]
_AUDIO_FORMATS: dict[str, AudioFormat] = {
    **_FORMATS,
    "audio/wav": "wav",
    "audio/wave": "wav",
    "audio/x-wav": "wav",
    "audio/*": "wav",
}
_ASK = f"application/json or {MEDIA_TYPE} (alias application/octet-stream)"

F = TypeVar("F", bound=str)


def negotiate(accept: str | None) -> Format:
    """The supported format with the highest q in Accept (the first listed on a tie)."""
    return _best(accept, _FORMATS, "json", _ASK)


def negotiate_audio(accept: str | None) -> AudioFormat:
    """As `negotiate`, for a route that also answers a sound (audio/wav)."""
    return _best(accept, _AUDIO_FORMATS, "json", f"audio/wav, {_ASK}")


def _best(accept: str | None, formats: Mapping[str, F], default: F, ask: str) -> F:
    if not accept or not accept.strip():
        return default
    best: F | None = None
    best_q = 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        found = formats.get(media.lower())
        if found is not None and q > best_q:
            best, best_q = found, q
    if best is None:
        raise NotAcceptableError(f"cannot answer in {accept!r}; ask for {ask}", "accept")
    return best


def render(prediction: Prediction, extra: dict[str, Any], fmt: Format) -> Response:
    """The family's fields plus `extra` (model, version) plus cache and warnings."""
    common = {
        **extra,
        "cache": prediction.cache,
        "warnings": [asdict(n) for n in prediction.warnings],
    }
    if fmt == "json":
        return OrjsonResponse({**prediction.fields, **common})
    rest, arrays = split(prediction.fields)
    return Response(encode(Bundle({**rest, **common}, arrays)), media_type=MEDIA_TYPE)
