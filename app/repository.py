"""The model repository: `<root>/<name>/<version>/manifest.json` plus the graphs it names.

A scan yields an immutable `Snapshot`; the service swaps the whole snapshot at once on
reload, so a request sees one consistent set of models from start to end. A version that
cannot be served (bad JSON, a graph whose sha256 is not the manifest's, a missing file, a
session onnxruntime cannot create) is refused with its reason and every other version keeps
serving. Each model's promotion record (app/promotion.py) is read in the same scan: "latest"
is the highest promoted version that loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import anyio
import anyio.to_thread

from app.errors import ManifestError, NotFoundError
from app.families import Predictor, build_predictor
from app.manifest import Manifest, parse_manifest
from app.promotion import Promotion, State, read_promotion
from app.runtime import Graph, GraphIdent, Runtime

log = logging.getLogger("fieldserve.repository")

_VERSION = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    manifest: Manifest
    manifest_json: bytes  # canonical JSON of the whole manifest, for /v1/models/{name}
    graphs: Mapping[str, Graph]
    predictor: Predictor
    fingerprint: str  # sha256 of manifest.json, which holds every graph's sha256

    @property
    def provider(self) -> str:
        used = {g.provider for g in self.graphs.values()}
        return used.pop() if len(used) == 1 else "mixed"


@dataclass(frozen=True)
class Refusal:
    name: str
    version: str
    path: Path
    reason: str


@dataclass(frozen=True)
class Snapshot:
    models: Mapping[str, Mapping[int, ModelVersion]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    refused: tuple[Refusal, ...] = ()
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    promotions: Mapping[str, Promotion] = field(default_factory=lambda: MappingProxyType({}))

    def __iter__(self) -> Iterator[ModelVersion]:
        for versions in self.models.values():
            yield from versions.values()

    def promotion(self, name: str) -> Promotion:
        return self.promotions.get(name) or Promotion()

    def state(self, model: ModelVersion) -> State:
        return self.promotion(model.name).state(model.version)

    def latest(self, name: str) -> ModelVersion | None:
        """The highest promoted version that is served, if any."""
        promotion = self.promotion(name)
        versions = self.models.get(name, {})
        promoted = [v for v in versions if promotion.state(v) == "promoted"]
        return versions[max(promoted)] if promoted else None

    def shown(self, name: str) -> ModelVersion:
        """What describes a model: its latest, else its highest version (a candidate)."""
        versions = self.models.get(name)
        if not versions:
            raise NotFoundError(f"no model named {name!r} is served (see GET /v1/models)", "model")
        return self.latest(name) or versions[max(versions)]

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The named version, or the latest (highest promoted) one; NotFoundError names what
        is missing."""
        versions = self.models.get(name)
        if not versions:
            raise NotFoundError(f"no model named {name!r} is served (see GET /v1/models)", "model")
        if version is None:
            latest = self.latest(name)
            if latest is None:
                raise NotFoundError(_no_latest(name, versions, self.promotion(name)), "version")
            return latest
        # Canonical spelling only, as on disk: "01" is not version 1. No served version has
        # 19 digits, and int() refuses strings of thousands (Python's int-string limit).
        if len(version) <= 18 and _VERSION.fullmatch(version) and str(int(version)) == version:
            found = versions.get(int(version))
            if found is not None:
                return found
        served = ", ".join(str(v) for v in sorted(versions))
        shown = version if len(version) <= 40 else f"{version[:40]}... ({len(version)} chars)"
        raise NotFoundError(
            f"model {name!r} has no version {shown!r} (served: {served})", "version"
        )

    def find(self, name: str, version: int) -> ModelVersion | None:
        return self.models.get(name, {}).get(version)

    @property
    def execution_provider(self) -> str | None:
        used = {m.provider for m in self}
        if not used:
            return None
        return used.pop() if len(used) == 1 else "mixed"


def _no_latest(name: str, versions: Mapping[int, ModelVersion], promotion: Promotion) -> str:
    served = ", ".join(str(v) for v in sorted(versions))
    why = (
        f"its promotion record is refused ({promotion.problem})"
        if promotion.record == "refused"
        else "no served version of it is promoted (python -m training promote)"
    )
    return (
        f"model {name!r} has no latest version: {why}; its versions are served by number "
        f"(/versions/{{v}}/...): {served}"
    )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified(folder: Path, graph: str, file: str, sha256: str) -> bytes:
    """The bytes of one file of a graph, refused unless they hash to the manifest's sha256."""
    try:
        data = (folder / file).read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"graph {graph!r}: file {file} is missing") from None
    except OSError as exc:
        raise ManifestError(f"graph {graph!r}: cannot read {file}: {exc}") from None
    digest = _sha256(data)
    if digest != sha256.lower():
        raise ManifestError(
            f"graph {graph!r}: sha256 of {file} is {digest}, the manifest says "
            f"{sha256}; the file is not the one that was exported"
        )
    return data


def load_version(
    path: Path, name: str, version: int, runtime: Runtime, previous: ModelVersion | None = None
) -> ModelVersion:
    """Verify, then load, one version folder. Raises ManifestError with the refusal reason."""
    try:
        raw = (path / "manifest.json").read_bytes()
    except FileNotFoundError:
        raise ManifestError("no manifest.json in the version folder") from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest.json: {exc}") from None
    manifest, canonical = parse_manifest(raw)
    # Clients address a version by its path; a manifest describing some other version (a
    # folder copied without re-export) would make responses and metrics lie about the model.
    if manifest.name != name or manifest.version != str(version):
        raise ManifestError(
            f"manifest.json describes {manifest.name}/{manifest.version}, but it lies in "
            f"{name}/{version}; export with --version or fix the manifest"
        )
    # Every graph is hashed before any is loaded: a corrupted or swapped file is never
    # handed to onnxruntime. The verified bytes themselves are loaded, not the file again.
    blobs: dict[str, bytes] = {}
    external: dict[str, dict[str, bytes]] = {}
    for graph, spec in manifest.graphs.items():
        blobs[graph] = _verified(path, graph, spec.file, spec.sha256)
        external[graph] = {f: _verified(path, graph, f, sha) for f, sha in spec.data.items()}

    fingerprint = _sha256(raw)
    if previous is not None and previous.fingerprint == fingerprint:
        # Versions are immutable and the graphs were just verified against this very
        # manifest, so the sessions already open are for identical bytes: keep them.
        return previous
    graphs = {
        graph: runtime.load(
            GraphIdent(name, str(version), graph, spec.sha256.lower()),
            blobs[graph],
            [t.name for t in spec.inputs],
            [t.name for t in spec.outputs],
            external[graph],
        )
        for graph, spec in manifest.graphs.items()
    }
    predictor = build_predictor(manifest, graphs)
    return ModelVersion(
        name, version, path, manifest, canonical, MappingProxyType(graphs), predictor, fingerprint
    )


def scan(root: Path, runtime: Runtime, previous: Snapshot | None = None) -> Snapshot:
    """Load every version under root. Blocking (file reads, session creation)."""
    if not root.is_dir():
        log.error("model repository %s does not exist or is not a folder: serving nothing", root)
        return Snapshot()
    models: dict[str, Mapping[int, ModelVersion]] = {}
    refused: list[Refusal] = []
    promotions: dict[str, Promotion] = {}
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        name = model_dir.name
        promotion = promotions[name] = read_promotion(model_dir)
        if promotion.record == "refused":
            log.error(
                "model %s: promotion record refused, no version is latest: %s",
                name,
                promotion.problem,
            )
            reason = f"{promotion.problem}; no version is served as latest, pinned ones are"
            refused.append(Refusal(name, "latest", promotion.path or model_dir, reason))
        versions: dict[int, ModelVersion] = {}
        for version_dir in sorted(model_dir.iterdir()):
            # Hidden folders are exports in progress (.<v>.partial), not versions.
            if not version_dir.is_dir() or version_dir.name.startswith("."):
                continue
            label = version_dir.name
            try:
                if not _VERSION.fullmatch(label) or str(int(label)) != label:
                    raise ManifestError(
                        "version folders are named by integers without leading zeros"
                    )
                version = int(label)
                prior = previous.find(name, version) if previous else None
                loaded = load_version(version_dir, name, version, runtime, prior)
            except ManifestError as exc:
                log.error("refused model %s version %s (%s): %s", name, label, version_dir, exc)
                refused.append(Refusal(name, label, version_dir, str(exc)))
                continue
            except Exception as exc:  # one broken version must never stop the others loading
                log.exception("refused model %s version %s (%s)", name, label, version_dir)
                refused.append(Refusal(name, label, version_dir, f"unexpected error: {exc!r}"))
                continue
            if loaded is not prior:
                log.info(
                    "loaded model %s version %s (%s/%s) on %s",
                    name,
                    label,
                    loaded.manifest.family,
                    loaded.manifest.task,
                    loaded.provider,
                )
            versions[version] = loaded
        if versions:
            models[name] = MappingProxyType(dict(sorted(versions.items())))
    return Snapshot(
        MappingProxyType(models), tuple(refused), promotions=MappingProxyType(promotions)
    )


class ModelRepository:
    """Holds the current snapshot; `reload` builds a new one off the loop and swaps it in."""

    def __init__(self, root: Path, runtime: Runtime) -> None:
        self.root = root
        self.runtime = runtime
        self._snapshot = Snapshot()
        self._lock = anyio.Lock()

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    async def reload(self) -> Snapshot:
        # One scan at a time; requests keep the snapshot they started with meanwhile.
        async with self._lock:
            fresh = await anyio.to_thread.run_sync(scan, self.root, self.runtime, self._snapshot)
            self._snapshot = fresh  # a single reference assignment: the atomic swap
            return fresh
