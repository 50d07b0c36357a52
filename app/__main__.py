"""`python -m app`: serve with the settings from the FIELDSERVE_* environment."""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight onnxruntime's for the same cores: a (10k x 65) . (65,) product
# took 10-12 ms with them and 0.055 ms without on 2 cores. Set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import uvicorn

from app.logs import configure_logging
from app.main import create_app
from app.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # keep the logging configured above (JSON lines, request ids)
        access_log=False,  # app.access writes one line per request, with its id
    )


if __name__ == "__main__":
    main()
