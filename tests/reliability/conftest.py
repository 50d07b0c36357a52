"""One chaos lab for the package: a work folder and the small scale every test runs at."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.chaos import Lab

# Small enough for the whole package to run in well under 3 minutes on 2 busy cores, large
# enough that every fault lands under load (16 clients, phases of 1.5 s or more).
SCALE = 0.1


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    return Lab(Path(tmp_path_factory.mktemp("chaos")), scale=SCALE, say=lambda _text: None)
