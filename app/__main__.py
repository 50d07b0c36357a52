"""`python -m app`: serve with the settings from the FIELDSERVE_* environment."""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight onnxruntime's for the same cores: a (10k x 65) . (65,) product
# took 10-12 ms with them and 0.055 ms without on 2 cores. Set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import uvicorn

from app.logs import configure_logging
from app.main import create_app
from app.server import config
from app.settings import Settings


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.Server(config(create_app(settings), settings)).run()


if __name__ == "__main__":
    main()
