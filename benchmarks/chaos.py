"""`python -m benchmarks chaos --json out.json [--quick | --scale S] [--scenarios a,b]`:
the reliability suite. The real service (`python -m app`) under faults, each scenario counting
every request it sends as correct, errors (a designed refusal), wrong or lost (benchmarks.tally).

    redis            Redis killed (SIGKILL), restarted, hung (SIGSTOP) and resumed under 16 clients
    broken-versions  broken versions dropped into the repository and reloaded under load
    hot-reload       a valid new version (other numbers) reloaded in and out under load
    corrupt-cache    every cache entry in Redis overwritten with garbage, then asked again
    foreign-cache    ...with well-formed bundles of the wrong shape, dtype or kind
    hostile          hostile inputs: shapes, versions, numbers, bodies, encodings, headers
    oversized        requests within the limits that ask for gigabytes (memory guard at 1.5 GB)
    auth             every route x every way of presenting a key
    soak             steady load; the service's resident memory over time and its trend
    training-killed  `python -m training train` killed at random steps, resumed: same weights
    export-killed    `python -m training export` killed at random moments: no half version

The same functions run small in tests/reliability (scale ~0.1) and large here (scale 1, the
default: minutes). Answers are checked against the model's own graphs run in this process
(benchmarks.reference).
"""

from __future__ import annotations

import datetime as dt
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import auth_matrix, machine, report
from benchmarks.cache_faults import FOREIGN, MALFORMED, corrupt_all
from benchmarks.field_calls import FieldTraffic
from benchmarks.hostile import Hostile
from benchmarks.oversized import (
    RSS_BOUND_MB,
    RssGuard,
    cache_mb,
    oversized_calls,
    response_limit,
    returned,
    settle,
)
from benchmarks.redis_faults import start_redis
from benchmarks.reference import Domain, Reference
from benchmarks.server import ROOT, ServerProcess
from benchmarks.tally import CORRECT, Row, Tally, Verdict
from benchmarks.traffic import Answer, Call, Connection, Load, judged, lost_or_none
from benchmarks.training_faults import TinyRun, killed_exports, killed_training
from benchmarks.version_faults import BROKEN, copy_version, scaled_version

QUICK_SCALE = 0.1


@dataclass
class Lab:
    """Where and how big: the work folder, the scale, and the model the scenarios serve."""

    workdir: Path
    scale: float = 1.0
    clients: int = 16
    seed: int = 0
    model_dir: Path = ROOT / "models"
    model: str = "acoustics-room-2d"
    airfoil: str | None = "airfoil-enf2enf"  # also served by hostile and auth, if present
    say: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))
    _references: dict[Path, Reference] = field(default_factory=dict)

    def seconds(self, full: float, least: float) -> float:
        return max(least, full * self.scale)

    def count(self, full: int, least: int) -> int:
        return max(least, round(full * self.scale))

    def rng(self, salt: str) -> random.Random:
        return random.Random(f"{self.seed}:{salt}")

    @property
    def good_version(self) -> Path:
        """The newest version of the model in the source repository."""
        versions = [p for p in (self.model_dir / self.model).iterdir() if p.name.isdigit()]
        if not versions:
            raise FileNotFoundError(f"{self.model_dir / self.model} holds no version")
        return max(versions, key=lambda p: int(p.name))

    def repository(self, tag: str, airfoil: bool = False) -> Path:
        """A fresh model repository of our own: the model copied as version 1 (the scenarios
        write beside it), and the airfoil model linked in read-only when asked for."""
        root = self.workdir / tag / "models"
        shutil.rmtree(root, ignore_errors=True)
        (root / self.model).mkdir(parents=True)
        copy_version(self.good_version, root / self.model / "1", 1)
        if airfoil and self.airfoil_name is not None:
            (root / self.airfoil_name).symlink_to((self.model_dir / self.airfoil_name).resolve())
        return root

    @property
    def airfoil_name(self) -> str | None:
        if self.airfoil and (self.model_dir / self.airfoil).is_dir():
            return self.airfoil
        return None

    def reference(self, version_dir: Path) -> Reference:
        if version_dir not in self._references:
            self._references[version_dir] = Reference(version_dir)
        return self._references[version_dir]

    def traffic(self, repo: Path) -> FieldTraffic:
        return FieldTraffic.of(self.reference(repo / self.model / "1"), seed=self.seed)

    @contextmanager
    def serve(self, repo: Path, **settings: str) -> Iterator[ServerProcess]:
        server = ServerProcess(self.workdir, repo, {"FIELDSERVE_LOG_LEVEL": "warning", **settings})
        server.start()
        try:
            yield server
        finally:
            server.stop()


def server_errors(server: ServerProcess, tally: Tally) -> None:
    """The service's own error lines (an unexpected exception logs its traceback): counted,
    the first quoted, so a failing scenario's report says where to look."""
    if not server.log_path.exists():
        return
    lines = [
        line
        for line in server.log_path.read_text(errors="replace").splitlines()
        if '"level":"error"' in line or "Traceback" in line
    ]
    if lines:
        first = lines[0]
        try:
            doc = orjson.loads(first)
            first = f"{doc.get('msg')} | {str(doc.get('exc', '')).splitlines()[-1:]}"
        except orjson.JSONDecodeError:
            pass
        tally.note(f"service log: {len(lines)} error lines; first: {first[:400]}")


def _ready_probe(tally: Tally) -> Call:
    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        return CORRECT if answer.status == 200 else Verdict("wrong", f"ready {answer.status}")

    return Call("ready probe", "GET", "/health/ready", judge)


# -- scenarios ----------------------------------------------------------------------------------


def redis_outage(lab: Lab) -> Row:
    """Redis killed, restarted (empty), hung and resumed while 16 clients ask; a readiness probe
    every quarter second throughout."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("redis")
    traffic = lab.traffic(repo)
    phase_s = lab.seconds(10.0, 1.5)
    with (
        start_redis(lab.workdir / "redis-outage") as redis,
        lab.serve(repo, FIELDSERVE_REDIS_URL=redis.url) as server,
    ):
        probe = Connection(server.base_url)
        phases: list[tuple[str, Callable[[], Any] | None]] = [
            ("up", None),
            ("killed", redis.kill),
            ("restarted", redis.start),
            ("hung", redis.pause),
            ("resumed", redis.resume),
            ("up again", None),
        ]
        with Load(server.base_url, traffic.call, tally, lab.clients, lab.seed):
            for name, action in phases:
                if action is not None:
                    action()
                sent, slowest = tally.sent, 0.0
                end = time.monotonic() + phase_s
                while time.monotonic() < end:
                    slowest = max(slowest, judged(probe, _ready_probe(tally), tally).seconds)
                    time.sleep(0.25)
                tally.note(
                    f"{name}: {tally.sent - sent} answers in {phase_s:.1f}s, slowest ready "
                    f"probe {slowest * 1e3:.0f} ms"
                )
        probe.close()
        server_errors(server, tally)
    return tally.row("redis killed, hung, restarted", time.monotonic() - t0)


def _reload(expect_versions: set[str], refused: str | None, model: str) -> Call:
    """POST /v1/admin/reload: the model served at exactly `expect_versions`, and `refused`
    (a version folder name) among the refusals, or no refusal at all."""

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        if answer.status != 200:
            return Verdict("wrong", f"reload {answer.status}: {answer.body[:200]!r}")
        doc = orjson.loads(answer.body)
        served = {m["version"] for m in doc["models"] if m["name"] == model}
        refusals = {r["version"] for r in doc["refused"] if r["name"] == model}
        if served != expect_versions:
            return Verdict("wrong", f"serves versions {sorted(served)} after reload")
        if refusals != ({refused} if refused else set()):
            return Verdict("wrong", f"refused {sorted(refusals)}, expected {refused}")
        return CORRECT

    return Call("reload", "POST", "/v1/admin/reload", judge)


def broken_versions(lab: Lab) -> Row:
    """Each kind of broken version dropped in as version 2 and reloaded under load: refused
    with its reason, version 1 served throughout; then taken out and reloaded again."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("broken")
    good = repo / lab.model / "1"
    ref = lab.reference(good)
    traffic = FieldTraffic(
        lab.model,
        Domain(ref.manifest),
        {"1": ref},
        pinned={"1": (ref, frozenset()), "2": (None, frozenset({404}))},
        seed=lab.seed,
    )
    dwell = lab.seconds(2.0, 0.3)
    with lab.serve(repo) as server:
        admin = Connection(server.base_url)
        with Load(server.base_url, traffic.call, tally, lab.clients, lab.seed):
            for _ in range(lab.count(3, 1)):
                for kind, make in BROKEN.items():
                    folder = make(good, repo / lab.model, 2)
                    call = _reload({"1"}, folder.name, lab.model)
                    judged(admin, replace(call, label=f"reload: {kind}"), tally)
                    time.sleep(dwell)
                    shutil.rmtree(folder)
                    judged(admin, _reload({"1"}, None, lab.model), tally)
        admin.close()
        server_errors(server, tally)
    tally.note(f"{len(BROKEN)} kinds: {', '.join(BROKEN)}")
    return tally.row("broken versions reloaded", time.monotonic() - t0)


def hot_reload(lab: Lab) -> Row:
    """A valid version 2 (6x the pressure of version 1) reloaded in and out under load: every
    answer is one version's, whole; right after each reload the latest version is the new one
    (the repository has no promotion record, so every version that loads counts as promoted)."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("hot-reload")
    model_dir = repo / lab.model
    try:
        made = scaled_version(model_dir / "1", model_dir, 2)
    except ImportError as exc:  # onnx is in the train extra
        tally.note(f"skipped: making a new version needs onnx ({exc})")
        return tally.row("valid version hot-reloaded", time.monotonic() - t0)
    parked = model_dir / ".2.parked"
    made.rename(parked)
    ref1, ref2 = lab.reference(model_dir / "1"), Reference(parked)
    traffic = FieldTraffic(
        lab.model,
        Domain(ref1.manifest),
        {"1": ref1, "2": ref2},
        pinned={"1": (ref1, frozenset()), "2": (ref2, frozenset({404}))},
        seed=lab.seed,
    )
    only = {
        v: FieldTraffic(lab.model, traffic.domain, {v: r}, seed=lab.seed + 1)
        for v, r in (("1", ref1), ("2", ref2))
    }
    dwell = lab.seconds(2.5, 0.4)
    rng = lab.rng("hot-reload")
    toggles = lab.count(12, 4)
    with lab.serve(repo) as server:
        admin = Connection(server.base_url)
        with Load(server.base_url, traffic.call, tally, lab.clients, lab.seed):
            for i in range(toggles):
                serving_two = i % 2 == 0
                if serving_two:
                    parked.rename(made)
                else:
                    made.rename(parked)
                latest = "2" if serving_two else "1"
                judged(admin, _reload({"1", "2"} if serving_two else {"1"}, None, lab.model), tally)
                after = only[latest].one(rng)
                judged(admin, replace(after, label=f"latest right after reload = v{latest}"), tally)
                time.sleep(dwell)
        admin.close()
        server_errors(server, tally)
    tally.note(f"{toggles} reloads, version 2 in and out; version 2 = 6 x version 1")
    return tally.row("valid version hot-reloaded", time.monotonic() - t0)


def corrupt_cache(lab: Lab, kinds: Sequence[str] = MALFORMED, title: str = "") -> Row:
    """Answers cached in Redis, then every entry overwritten with one kind of garbage and the
    same requests asked again, kind after kind (the in-process tier off, so every lookup reads
    Redis); then the kinds mixed, asked of a fresh service with its default tiers."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("corrupt-cache")
    traffic = lab.traffic(repo)
    rng = lab.rng("corrupt-cache")
    calls = [traffic.call(rng) for _ in range(lab.count(120, 24))]
    marker = lab.workdir / "corrupt-cache" / "unpickled"
    marker.unlink(missing_ok=True)

    def ask(server: ServerProcess, label: str) -> None:
        conn = Connection(server.base_url)
        for call in calls:
            judged(conn, replace(call, label=f"{label}: {call.label}"), tally)
        conn.close()

    with start_redis(lab.workdir / "corrupt-cache" / "redis") as redis:
        client = redis.client()
        url = redis.url
        # Unknown to a service without a local tier, and then ignored: that one reads Redis anyway.
        with lab.serve(repo, FIELDSERVE_REDIS_URL=url, FIELDSERVE_CACHE_LOCAL_MAX_BYTES="0") as s:
            ask(s, "fill")
            for kind in kinds:
                entries = sum(corrupt_all(client, marker, [kind]).values())
                ask(s, kind)
                tally.note(f"{kind}: {entries} entries damaged")
            server_errors(s, tally)
        mixed = corrupt_all(client, marker, kinds)
        with lab.serve(repo, FIELDSERVE_REDIS_URL=url) as s:
            ask(s, "mixed, fresh service")
            ask(s, "mixed, fresh service again")
            server_errors(s, tally)
        client.close()
    if marker.exists():
        tally.add("pickle", Verdict("wrong", "the service unpickled a cache value"))
    tally.note(f"mixed damage: {dict(mixed)}")
    return tally.row(title or "corrupt cache entries", time.monotonic() - t0)


def foreign_cache(lab: Lab) -> Row:
    """As corrupt_cache, with well-formed bundles that are not what their key promises."""
    return corrupt_cache(lab, FOREIGN, "foreign cache entries")


def hostile_inputs(lab: Lab, groups: Sequence[str] | None = None) -> Row:
    """Every hostile request (of `groups`, benchmarks.hostile.GROUPS; all when None) on a fresh
    connection, then valid requests: still right."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("hostile", airfoil=True)
    traffic = lab.traffic(repo)
    bomb = (1 << 30) if lab.scale >= 1 else (128 << 20)
    calls = Hostile(traffic, lab.airfoil_name, bomb).calls(groups)
    rng = lab.rng("hostile")
    with lab.serve(repo) as server:
        before = server.rss()["VmRSS"]
        grew: dict[str, float] = {}
        for _ in range(lab.count(3, 1)):
            for call in calls:
                held = settle(server.pid, 0.0)
                conn = Connection(server.base_url)
                judged(conn, call, tally)
                conn.close()
                after = settle(server.pid, 0.0)
                if held is not None and after is not None and after - held > 20:
                    # MB still held once answered: worth a look, not a failure.
                    grew[call.label] = max(grew.get(call.label, 0.0), round(after - held))
        conn = Connection(server.base_url)
        for _ in range(20):
            call = traffic.call(rng)
            judged(conn, replace(call, label=f"valid after: {call.label}"), tally)
        conn.close()
        rss = server.rss()
        server_errors(server, tally)
    tally.note(f"{len(calls)} calls; resident {before:.0f} -> {rss['VmRSS']:.0f} MB "
               f"(peak {rss['VmHWM']:.0f}); calls after which the service held 20+ MB more: "
               f"{grew}")  # fmt: skip
    tally.measures["rss_mb"] = {"before": before, **rss}
    title = "hostile inputs" if groups is None else f"hostile inputs: {', '.join(groups)}"
    return tally.row(title, time.monotonic() - t0)


def oversized_requests(lab: Lab, routes: Sequence[str] = ("v2", "domain")) -> Row:
    """The issue's requests for gigabytes, one at a time under a memory guard: refused or
    answered within the response limit (FIELDSERVE_MAX_RESPONSE_BYTES), the service under
    1.5 GB and back within 10%. `routes`: "v2", "domain" or both."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("oversized", airfoil=True)
    traffic = lab.traffic(repo)
    rng = lab.rng("oversized")
    rows = []
    limit = response_limit(lab.scale)
    tally.note(f"answer limit FIELDSERVE_MAX_RESPONSE_BYTES={limit}")
    with lab.serve(repo, FIELDSERVE_MAX_RESPONSE_BYTES=str(limit)) as server:
        for item in oversized_calls(traffic, lab.scale, lab.airfoil_name):
            if item.route not in routes:
                continue
            if server.process is None or server.process.poll() is not None:
                server.stop()
                server.start()
            warm = Connection(server.base_url)
            for _ in range(lab.count(60, 12)):
                call = traffic.call(rng)
                judged(warm, replace(call, label=f"warm-up: {call.label}"), tally)
            warm.close()
            probe = Connection(server.base_url)
            cached_before = cache_mb(probe) or 0.0
            before = settle(server.pid, lab.seconds(0.5, 0.2)) or 0.0
            conn = Connection(server.base_url, timeout_s=180.0)
            with RssGuard(server.pid) as guard:
                answer = conn.send(item.call)
            conn.close()
            verdict = item.call.judge(answer)
            after = settle(server.pid, lab.seconds(2.0, 1.0)) if not guard.killed else None
            cached = (cache_mb(probe) or 0.0) - cached_before if after is not None else 0.0
            probe.close()
            if guard.killed:
                verdict = Verdict(
                    "lost", f"resident memory passed {RSS_BOUND_MB:.0f} MB: killed by the guard"
                )
            elif after is None:
                code = server.process.poll() if server.process is not None else None
                verdict = Verdict("lost", f"the service died (exit {code}) answering it")
            elif guard.peak_mb > RSS_BOUND_MB:
                verdict = Verdict("wrong", f"resident peak {guard.peak_mb:.0f} MB")
            elif verdict.outcome != "lost" and not returned(before, after, cached):
                verdict = Verdict(
                    "wrong",
                    f"resident {before:.0f} -> {after:.0f} MB afterwards, of which the cache "
                    f"took {cached:.0f} MB",
                )
            tally.add(item.call.label, verdict)
            rows.append(
                {
                    "request": item.call.label,
                    "request_mb": round(item.request_mb, 1),
                    "status": answer.status,
                    "answer_mb": round(len(answer.body) / 1e6, 1),
                    "seconds": round(answer.seconds, 1),
                    "rss_before_mb": before,
                    "rss_peak_mb": guard.peak_mb,
                    "rss_after_mb": after,
                    "cache_took_mb": round(cached, 1),
                }
            )
            tally.note(
                f"{item.call.label} ({item.request_mb:.1f} MB): {answer.status or answer.failure}"
                f" in {answer.seconds:.1f}s, resident {before:.0f} -> peak {guard.peak_mb:.0f}"
                f" -> {after if after is None else round(after)} MB (cache +{cached:.0f} MB)"
            )
        server_errors(server, tally)
    tally.measures["requests"] = rows
    title = "oversized requests" + ("" if len(routes) > 1 else f": {routes[0]}")
    return tally.row(title, time.monotonic() - t0)


def auth(lab: Lab) -> Row:
    """Every route x every credential against a service with API and admin keys; the status
    designed for each is the open twin's status for an authorised caller."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("auth", airfoil=True)
    traffic = lab.traffic(repo)
    routes = auth_matrix.routes(traffic, lab.airfoil_name)
    credentials = list(auth_matrix.credentials())
    with lab.serve(repo) as twin, lab.serve(repo, **auth_matrix.settings()) as locked:
        twin_conn = Connection(twin.base_url)
        for route in routes:
            open_answer = twin_conn.send(
                auth_matrix.call(route, "open twin", {}, lambda a: CORRECT)
            )
            if not open_answer.answered or open_answer.status >= 500:
                tally.add(f"{route.label} / open twin", Verdict("lost", open_answer.failure))
                continue
            for label, who, headers in credentials:
                judge = auth_matrix.judge_for(route, who, open_answer.status)
                conn = Connection(locked.base_url)
                judged(conn, auth_matrix.call(route, label, headers, judge), tally)
                conn.close()
        twin_conn.close()
        server_errors(locked, tally)
    tally.note(f"{len(routes)} routes x {len(credentials)} credentials")
    return tally.row("auth matrix", time.monotonic() - t0)


def _trend(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of resident memory, MB per minute."""
    t = np.asarray([s[0] for s in samples])
    y = np.asarray([s[1] for s in samples])
    if len(t) < 3 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t / 60.0, y, 1)[0])


def soak(lab: Lab) -> Row:
    """Steady load with Redis as the cache; the service's VmRSS and its in-process cache tier's
    own byte count sampled throughout. Trends are fitted over the last 80% (the first 20% is
    the caches and arenas filling); what is not the cache is what could be a leak."""
    t0, tally = time.monotonic(), Tally()
    repo = lab.repository("soak")
    traffic = lab.traffic(repo)
    duration = lab.seconds(300.0, 8.0)
    every = max(0.25, duration / 200)
    samples: list[tuple[float, float, float]] = []  # seconds, resident MB, cache MB
    with (
        start_redis(lab.workdir / "soak") as redis,
        lab.serve(repo, FIELDSERVE_REDIS_URL=redis.url) as server,
    ):
        probe = Connection(server.base_url)
        start = time.monotonic()
        with Load(server.base_url, traffic.call, tally, lab.clients, lab.seed):
            while (now := time.monotonic()) - start < duration:
                cached = cache_mb(probe) or 0.0
                samples.append((now - start, server.rss()["VmRSS"], cached))
                time.sleep(every)
        probe.close()
        rss = server.rss()
        server_errors(server, tally)
    rates = tally.sent / duration
    tail = samples[len(samples) // 5 :]
    slope = _trend([(t, m) for t, m, _ in tail])
    beyond = _trend([(t, m - c) for t, m, c in tail])
    first, last = samples[0], samples[-1]
    peak = max(m for _, m, _ in samples)
    if peak > RSS_BOUND_MB:
        tally.add("resident memory", Verdict("wrong", f"peak {peak:.0f} MB"))
    tally.note(
        f"{duration:.0f}s at {rates:.0f} req/s; resident MB start {first[1]:.0f}, peak "
        f"{peak:.0f}, end {last[1]:.0f} (in-process cache {last[2]:.0f}); trend over the last "
        f"80%: {slope:+.1f} MB/min, {beyond:+.1f} MB/min not counting the cache"
    )
    tally.measures.update(
        {
            "rss_mb": {"start": first[1], "peak": peak, "end": last[1], "VmHWM": rss["VmHWM"]},
            "cache_mb_end": last[2],
            "rss_trend_mb_per_min": round(slope, 2),
            "rss_minus_cache_trend_mb_per_min": round(beyond, 2),
            "samples_s_rss_cache_mb": [[round(t, 1), m, round(c, 1)] for t, m, c in samples],
            "requests_per_s": round(rates, 1),
        }
    )
    return tally.row("soak", time.monotonic() - t0)


def _tiny(lab: Lab) -> TinyRun:
    tiny = TinyRun(lab.workdir / "training", steps=lab.count(1500, 300))
    tiny.prepare()
    return tiny


def training_killed(lab: Lab) -> Row:
    t0, tally = time.monotonic(), Tally()
    tiny = _tiny(lab)
    for run in ("run-straight", "run-killed"):
        shutil.rmtree(tiny.root / run, ignore_errors=True)
    killed_training(tiny, lab.count(5, 2), tally, lab.rng("training"))
    return tally.row("training killed and resumed", time.monotonic() - t0)


def export_killed(lab: Lab) -> Row:
    t0, tally = time.monotonic(), Tally()
    tiny = _tiny(lab)
    run = tiny.root / "run-straight"
    if not (run / "checkpoint.pt").exists():
        killed_training(tiny, 0, Tally(), lab.rng("export"))
    models = lab.workdir / "export" / "models"
    shutil.rmtree(models, ignore_errors=True)
    models.mkdir(parents=True)
    killed_exports(tiny, run, models, lab.count(8, 2), tally, lab.rng("export"))
    visible = sorted(p.name for p in models.glob("*/*") if not p.name.startswith("."))

    def judge(answer: Answer) -> Verdict:
        early = lost_or_none(answer)
        if early is not None:
            return early
        doc = orjson.loads(answer.body)
        served = sorted(m["version"] for m in doc.get("models", []))
        if answer.status != 200 or doc.get("refused") or served != sorted(visible, key=int):
            return Verdict("wrong", f"serves {served} of {visible}, refused {doc.get('refused')}")
        return CORRECT

    with lab.serve(models) as server:
        conn = Connection(server.base_url)
        judged(conn, Call("service over the repository", "GET", "/health/ready", judge), tally)
        conn.close()
    tally.note(f"versions left complete: {visible}")
    return tally.row("export killed", time.monotonic() - t0)


SCENARIOS: dict[str, Callable[[Lab], Row]] = {
    "redis": redis_outage,
    "broken-versions": broken_versions,
    "hot-reload": hot_reload,
    "corrupt-cache": corrupt_cache,
    "foreign-cache": foreign_cache,
    "hostile": hostile_inputs,
    "oversized": oversized_requests,
    "auth": auth,
    "soak": soak,
    "training-killed": training_killed,
    "export-killed": export_killed,
}


# -- the command --------------------------------------------------------------------------------


def table(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"machine: {m['cpu_model']}, {m['cores_usable']} cores, {m['memory_gb']} GB, load "
        f"{m['load_average_start']} -> {m.get('load_average_end')}; scale {doc['scale']}"
    ]
    head = (
        f"{'scenario':<30} {'sent':>7} {'correct':>8} {'errors':>7} {'wrong':>6} {'lost':>6}"
        f" {'seconds':>8}"
    )
    lines += [head, "-" * len(head)]
    for row in doc["scenarios"]:
        if "error" in row:
            lines.append(f"{row['scenario']:<30} FAILED TO RUN: {row['error']}")
            continue
        lines.append(
            f"{row['scenario']:<30} {row['sent']:>7} {row['correct']:>8} {row['errors']:>7} "
            f"{row['wrong']:>6} {row['lost']:>6} {row['seconds']:>8.1f}"
        )
    for row in doc["scenarios"]:
        for note in row.get("notes", []):
            lines.append(f"note [{row['scenario']}]: {note}")
    return "\n".join(lines)


def run(args: Any) -> int:
    """The `chaos` subcommand (arguments from benchmarks.__main__)."""
    import tempfile
    import traceback

    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {','.join(SCENARIOS)}")
    scale = QUICK_SCALE if args.quick else args.scale
    workdir = Path(tempfile.mkdtemp(prefix="fieldserve-chaos-"))
    lab = Lab(
        workdir,
        scale=scale,
        clients=args.clients,
        seed=args.seed,
        model_dir=args.model_dir,
        model=args.model,
    )
    doc: dict[str, Any] = {
        "schema": 1,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "scale": scale,
        "clients": args.clients,
        "model": f"{args.model_dir / args.model}",
        "machine": machine.describe(),
        "scenarios": [],
    }
    try:
        for name in chosen:
            lab.say(f"chaos: {name} ...")
            t0 = time.monotonic()
            try:
                row = SCENARIOS[name](lab).to_dict()
            except Exception as exc:  # one broken scenario must not lose the others
                traceback.print_exc()
                row = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"}
            lab.say(f"chaos: {name} done in {time.monotonic() - t0:.0f}s")
            doc["scenarios"].append(row)
    finally:
        doc["machine"]["load_average_end"] = machine.load_average()
        doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        doc["all_ok"] = all(
            "error" not in r and r["wrong"] == 0 and r["lost"] == 0 for r in doc["scenarios"]
        )
        if args.json:
            report.write(doc, args.json)
        if args.keep:
            lab.say(f"work folder (service logs): {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(doc))
    return 0 if doc["all_ok"] else 1
