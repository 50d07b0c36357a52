"""The serving side stands without the training wing: no torch, no `training`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, pkgutil, sys
import app, app.main
for module in pkgutil.walk_packages(app.__path__, "app."):
    importlib.import_module(module.name)  # every module, not only what app.main pulls in
app.main.create_app()
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "training"))
print("LEAKED", leaked)
sys.exit(1 if leaked else 0)
"""


def test_app_imports_neither_torch_nor_training() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "LEAKED []" in done.stdout
