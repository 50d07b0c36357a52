"""`python -m training report models/<name>/<v>`: a self-contained HTML page about a version.

The page shows how the version was trained (loss curves), what it predicts against the solver
on a few held-out cases (fields, and surface Cp for airfoils) and the evaluation the export
recorded (metrics table). The model runs through its exported graphs with onnxruntime, as it
is served; the reference is the solver's, from the stored test data or solved again.

The page is written beside the graphs as `report.html`. The service reads only the files a
manifest names, so the page changes neither what is served nor the version's fingerprint
(the sha256 of manifest.json, which the report never writes).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from training.enf2enf.problems import problem_of
from training.reports.history import history_of
from training.reports.metrics_table import metrics_table
from training.reports.page import Page, table

REPORT = "report.html"
DEFAULT_CASES = 3


def _header(page: Page, manifest: dict[str, Any], version_dir: Path) -> None:
    page.text(manifest.get("description", ""))
    rows: list[list[Any]] = [
        ["model", f"{manifest['name']} version {manifest['version']}"],
        ["family / task", f"{manifest['family']} / {manifest.get('task', '')}"],
        ["created", manifest.get("created", "")],
        ["graphs", ", ".join(g["file"] for g in manifest.get("graphs", {}).values())],
        ["folder", str(version_dir)],
    ]
    training = manifest.get("training", {})
    for key in ("kind", "steps", "seconds", "best_val_rel_l2"):
        if key in training:
            rows.append([f"training {key}", training[key]])
    page.raw(table(rows))


def _history(page: Page, manifest: dict[str, Any], version_dir: Path) -> None:
    page.heading("Loss curves")
    found = history_of(manifest, version_dir)
    page.text(found.note, css="note")
    if found.png is not None:
        page.figure(found.png, "Training history.", alt="loss curves")
    if found.final:
        page.raw(table([[k, v] for k, v in found.final.items()], ["last validation", "value"]))


def _commands(page: Page, manifest: dict[str, Any]) -> None:
    page.heading("How it was made")
    rows: list[str] = []
    for stage, command in manifest.get("commands", {}).items():
        for line in command if isinstance(command, list) else [command]:
            rows.append(
                f"<tr><td>{html.escape(stage)}</td><td><code>{html.escape(str(line))}"
                "</code></td></tr>"
            )
    page.raw("<table>" + "".join(rows) + "</table>")


def make_report(
    version_dir: str | Path,
    data_dir: str | Path | None = None,
    n_cases: int = DEFAULT_CASES,
    out: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Write the report of an exported version; returns its path.

    `data_dir` holds the version's dataset (default data/<dataset name>); whatever test data
    are missing there are solved again, and nothing is written into it.
    """
    version_dir = Path(version_dir)
    manifest_path = version_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{version_dir} holds no manifest.json: not an exported version")
    manifest = json.loads(manifest_path.read_text())
    family = manifest["family"]
    data = Path(data_dir) if data_dir else Path("data") / manifest["training"]["dataset"]["name"]
    page = Page(f"{manifest['name']} v{manifest['version']}: report")
    _header(page, manifest, version_dir)
    _history(page, manifest, version_dir)
    if family == "deeponet":
        from training.reports import acoustics

        acoustics.add_sections(page, manifest, version_dir, data, n_cases, progress)
    elif family == "enf2enf" and problem_of(manifest.get("training", {})) == "airfoils":
        from training.reports import airfoils

        airfoils.add_sections(page, manifest, version_dir, data, n_cases, progress)
    elif family == "enf2enf":
        problem = problem_of(manifest.get("training", {}))
        page.text(f"No test-case pictures for {problem!r} enf2enf models yet.", css="note")
    else:
        page.text(f"No test-case pictures for the {family!r} family yet.", css="note")
    page.heading("Metrics (the export's evaluation, from manifest.json)")
    page.raw(metrics_table(manifest.get("metrics", {})))
    if isinstance(manifest.get("data_error"), dict):
        page.heading("The data's own error")
        page.raw(metrics_table(manifest["data_error"]))
    _commands(page, manifest)
    page.text(
        f"This page: python -m training report {version_dir} ({n_cases} cases). It is not part "
        "of the served model: the service reads only the files the manifest names.",
        css="note",
    )
    return page.write(Path(out) if out else version_dir / REPORT)
