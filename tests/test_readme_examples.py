"""Every README example that talks to the service runs, as written, against a live server over
the shipped models: the shell ones with bash (curl), the Python ones with this interpreter.

What is changed before running: the port (a free one for 8000), `make serve &` lines (the
server is already up) and the `<key>` / `<admin key>` placeholders (real keys, for the API keys
section's server). Deployment examples (docker, kubectl, Triton) are not run here: the
deployment test builds and runs those.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.helpers_serving import live_server, metric, parse_metrics

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Sections whose examples need more than a running service (docker, kubectl, Triton's server).
NOT_RUN = ("# fieldserve", "## Deploy", "### Docker Compose", "### Kubernetes", "### NVIDIA Triton")
KEYED = "## API keys"
API_KEY, ADMIN_KEY = "readme-api-key", "readme-admin-key"
_BLOCK = re.compile(r"^(#{1,6} [^\n]*)$|^```(\w*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Example:
    section: str
    lang: str
    code: str
    line: int

    @property
    def id(self) -> str:
        return f"{self.lang}@README:{self.line}"


def examples() -> list[Example]:
    text = README.read_text()
    found, section = [], ""
    for m in _BLOCK.finditer(text):
        if m.group(1):
            section = m.group(1)
            continue
        lang, code = m.group(2), m.group(3)
        talks = ":8000" in code
        if lang in ("bash", "python") and talks and not section.startswith(NOT_RUN):
            found.append(Example(section, lang, code, text.count("\n", 0, m.start()) + 1))
    return found


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[bool, str]]:
    """An open server and a keyed one (for the API keys section), over the shipped models."""
    models = ROOT / "models"
    keyed = Settings(model_dir=models, api_keys={API_KEY}, admin_keys={ADMIN_KEY})
    with (
        live_server(create_app(Settings(model_dir=models))) as open_url,
        live_server(create_app(keyed)) as keyed_url,
    ):
        yield {False: open_url, True: keyed_url}


def prepared(example: Example, url: str) -> str:
    code = re.sub(r"(localhost|127\.0\.0\.1):8000", url, example.code)
    code = code.replace("<admin key>", ADMIN_KEY).replace("<key>", API_KEY)
    # The server is already up; `make serve &` (with or without settings) would start another.
    return "\n".join(line for line in code.splitlines() if "make serve" not in line) + "\n"


def test_the_readme_has_examples_to_run() -> None:
    sections = {e.section for e in examples()}
    assert len(examples()) >= 10 and KEYED in sections, sections


@pytest.mark.parametrize("example", examples(), ids=lambda e: e.id)
def test_readme_example_runs(example: Example, servers: dict[bool, str], tmp_path: Path) -> None:
    keyed = example.section == KEYED
    url = servers[keyed]
    before = _server_errors(url, keyed)
    code = prepared(example, url)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if example.lang == "bash":
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    else:
        command = [sys.executable, "-c", code]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{example.id}\n{code}\n{done.stdout}\n{done.stderr}"
    assert "internal error" not in done.stdout
    assert _server_errors(url, keyed) == before, "the example made the service answer 5xx"


def _server_errors(url: str, keyed: bool) -> float:
    headers = {"Authorization": f"Bearer {API_KEY}"} if keyed else {}
    text = httpx.get(f"http://{url}/metrics", headers=headers).text
    samples = parse_metrics(text)
    return sum(
        metric(samples, "fieldserve_request_errors_total", status=str(code))
        for code in range(500, 600)
    )
