"""The cache's parts on their own: the bundle codec, keys, both stores, single flight."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
import pytest

from app.bundle import MAGIC, Bundle, BundleError, decode, encode, join, split
from app.cache.keys import cache_key, digest
from app.cache.memory import MemoryBackend
from app.cache.redis_backend import RedisBackend, redacted
from app.cache.single_flight import SingleFlight
from app.cache.store import Cache
from tests.helpers_serving import free_port

if TYPE_CHECKING:
    from tests.fixtures_redis import RedisServer

pytest_plugins = ["tests.fixtures_redis"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- bundle ----------------------------------------------------------------------------------


def test_bundle_round_trip_keeps_dtypes_shapes_and_values() -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "pressure": rng.standard_normal((7, 5)).astype(np.float32),
        "times": np.linspace(0, 1, 5),
        "grid.index": np.arange(7, dtype=np.int64) * 3,
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
        "odd": np.arange(3, dtype=np.uint8),  # 3 bytes: the next array must still be aligned
        "after": np.arange(2, dtype=np.float64),
    }
    data = encode(Bundle({"model": "m", "n": 3}, arrays))
    assert data[:4] == MAGIC
    back = decode(data)
    assert back.meta == {"model": "m", "n": 3}
    assert list(back.arrays) == list(arrays)
    for name, array in arrays.items():
        assert back.arrays[name].dtype == array.dtype and back.arrays[name].shape == array.shape
        np.testing.assert_array_equal(back.arrays[name], array)
    # Every array starts on an 8-byte boundary of the buffer.
    header_end = 8 + int.from_bytes(data[4:8], "little")
    assert header_end % 8 == 0


def test_big_endian_arrays_are_written_little_endian() -> None:
    array = np.arange(4, dtype=">f4")
    back = decode(encode(Bundle({}, {"a": array})))
    assert back.arrays["a"].dtype.str == "<f4"
    np.testing.assert_array_equal(back.arrays["a"], array)


def test_split_and_join_move_nested_arrays_by_dotted_path() -> None:
    fields = {"pressure": np.ones(2), "grid": {"counts": (2, 3), "index": np.arange(3)}, "x": 1}
    rest, arrays = split(fields)
    assert rest == {"grid": {"counts": (2, 3)}, "x": 1}
    assert set(arrays) == {"pressure", "grid.index"}
    joined = join(rest, arrays)
    assert joined["grid"]["counts"] == (2, 3) and joined["grid"]["index"] is arrays["grid.index"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"FSA\x01",
        b"NOPE\x00\x00\x00\x00",
        b"FSA\x01\xff\x00\x00\x00{}",  # header longer than the data
        b"FSA\x01\x02\x00\x00\x00{}",  # no arrays list
        b"FSA\x01\x0c\x00\x00\x00not json!!!!",
    ],
)
def test_decode_refuses_what_is_not_a_bundle(data: bytes) -> None:
    with pytest.raises(BundleError):
        decode(data)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "dtype": "|O", "shape": [1], "offset": 0},  # objects: never unpickled
        {"name": "a", "dtype": "<f4", "shape": [1000], "offset": 0},  # runs past the end
        {"name": "a", "dtype": "<f4", "shape": [-1], "offset": 0},
        {"name": "a", "dtype": "<f4", "shape": [1], "offset": -8},
        {"name": "a", "dtype": "<f4"},
    ],
)
def test_decode_refuses_malformed_array_entries(entry: dict[str, Any]) -> None:
    import orjson

    header = orjson.dumps({"arrays": [entry]})
    header += b" " * (-(8 + len(header)) % 8)
    data = MAGIC + len(header).to_bytes(4, "little") + header + b"\0" * 8
    with pytest.raises(BundleError):
        decode(data)


# -- keys ------------------------------------------------------------------------------------


def test_keys_have_the_documented_shape_and_depend_on_everything() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = digest("sha-of-graph", [a])
    assert re.fullmatch(r"[0-9a-f]{40}", d)
    assert cache_key("room-2d", "3", "trunk", d) == f"fieldserve:room-2d:3:trunk:{d}"
    assert digest("sha-of-graph", [a.copy()]) == d  # content, not identity
    assert digest("sha-of-another-graph", [a]) != d  # a new graph never reads old entries
    assert digest("sha-of-graph", [a.reshape(3, 2)]) != d  # shape is in the hash
    assert digest("sha-of-graph", [a.astype(np.float64)]) != d  # dtype is in the hash
    assert digest("sha-of-graph", [a[:, :2]]) != d
    assert digest("s", data=b"body") != digest("s", data=b"body ")


# -- the stores --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_memory_store_expires_and_evicts_least_recently_used() -> None:
    clock = Clock()
    store = MemoryBackend(max_bytes=3 * (100 + 128 + 1), clock=clock)
    for key in "abc":
        await store.set(key, bytes(100), ttl_s=10)
    assert await store.get("a") == bytes(100)  # a is now the most recently used
    await store.set("d", bytes(100), ttl_s=10)  # over budget: b (least recent) goes
    assert await store.get("b") is None
    assert await store.get("a") is not None and await store.get("d") is not None
    assert store.status().detail["evictions"] == 1
    clock.now += 10.5
    assert await store.get("a") is None  # expired
    await store.set("huge", bytes(10_000), ttl_s=10)  # over the whole budget: not stored
    assert await store.get("huge") is None
    assert store.status().detail["bytes"] <= store.max_bytes


@pytest.mark.anyio
async def test_a_restarted_redis_costs_one_failure_not_one_per_pooled_connection(
    redis_server: RedisServer,
) -> None:
    store = RedisBackend(redis_server.url, timeout_s=0.5, backoff_s=0.05)
    try:
        # Several pooled connections, as concurrent requests leave them.
        await asyncio.gather(*(store.set(f"fieldserve:t:1:unit:{i}", b"v", 60) for i in range(4)))
        redis_server.kill()
        try:
            assert await store.get("fieldserve:t:1:unit:0") is None
            assert store.failures == 1 and not store.status().up
        finally:
            redis_server.start()
        await asyncio.sleep(0.06)  # the back-off
        await store.check()
        assert store.status().up
        got = await asyncio.gather(*(store.get(f"fieldserve:t:1:unit:{i}") for i in range(4)))
        assert got == [None] * 4  # a fresh, empty Redis, and no stale connection failed
        assert store.failures == 1
    finally:
        await store.close()


@pytest.mark.anyio
async def test_redis_store_sets_a_ttl_and_round_trips(redis_server: RedisServer) -> None:
    store = RedisBackend(redis_server.url, timeout_s=0.5, backoff_s=1.0)
    try:
        await store.set("fieldserve:t:1:unit:x", b"\x00value", ttl_s=77)
        assert await store.get("fieldserve:t:1:unit:x") == b"\x00value"
        assert await store.get("fieldserve:t:1:unit:absent") is None
        ttl = redis_server.client().ttl("fieldserve:t:1:unit:x")
        assert 0 < ttl <= 77
        assert store.status().up
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_dead_redis_is_skipped_during_the_back_off() -> None:
    clock = Clock()
    errors: list[str] = []
    store = RedisBackend(
        f"redis://:secret@127.0.0.1:{free_port()}/0",
        timeout_s=0.2,
        backoff_s=5.0,
        on_error=errors.append,
        clock=clock,
    )
    try:
        assert await store.get("k") is None  # refused: a miss, not an error
        assert errors == ["get"]
        await store.set("k", b"v", 10)
        assert await store.get("k") is None
        assert errors == ["get"]  # inside the back-off nothing is tried
        status = store.status()
        assert not status.up and status.detail["retry_in_s"] == 5.0
        assert "secret" not in str(status.detail)  # the URL's password never shows
        clock.now += 5.1
        await store.check()  # one probe after the back-off, which fails again
        assert errors == ["get", "ping"]
    finally:
        await store.close()


def test_redacted_urls_keep_no_credentials() -> None:
    assert redacted("redis://user:pw@cache:6380/2") == "redis://cache:6380/2"
    assert redacted("rediss://cache") == "rediss://cache"


# -- single flight -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_single_flight_runs_concurrent_identical_work_once() -> None:
    flights: SingleFlight[int] = SingleFlight()
    calls = 0

    async def work() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.05)
        return 42

    results: list[tuple[int, bool]] = []

    async def one() -> None:
        results.append(await flights.run("k", work))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert calls == 1
    assert sorted(results) == [(42, False)] + [(42, True)] * 7
    assert len(flights) == 0
    assert await flights.run("k", work) == (42, False)  # nothing is remembered afterwards
    assert calls == 2


@pytest.mark.anyio
async def test_single_flight_shares_errors_and_survives_a_cancelled_leader() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def fails() -> int:
        await anyio.sleep(0.02)
        raise ValueError("bad input")

    outcomes: list[str] = []

    async def one() -> None:
        try:
            await flights.run("e", fails)
        except ValueError as exc:
            outcomes.append(str(exc))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(one)
    assert outcomes == ["bad input"] * 3

    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.2)
        return 7

    got: list[tuple[int, bool]] = []
    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await flights.run("c", slow)

    async def follower() -> None:
        got.append(await flights.run("c", slow))

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await anyio.sleep(0.01)
        tg.start_soon(follower)
        await anyio.sleep(0.01)
        leader_scope.cancel()
    # The follower took over when the leader was cancelled, and got an answer.
    assert got == [(7, False)] and calls == 2


@pytest.mark.anyio
async def test_cache_stores_under_the_cap_and_counts() -> None:
    cache = Cache(MemoryBackend(1 << 20), ttl_s=60, max_item_bytes=1000)
    computed = 0

    async def small() -> Bundle:
        nonlocal computed
        computed += 1
        return Bundle({}, {"a": np.arange(10, dtype=np.float32)})

    async def big() -> Bundle:
        nonlocal computed
        computed += 1
        return Bundle({}, {"a": np.zeros(1000, np.float32)})

    assert (await cache.get_or_compute("k1", "m", "trunk", small))[1] is False
    value, reused = await cache.get_or_compute("k1", "m", "trunk", small)
    assert reused and computed == 1
    np.testing.assert_array_equal(value.arrays["a"], np.arange(10))
    await cache.get_or_compute("k2", "m", "trunk", big)
    assert (await cache.get_or_compute("k2", "m", "trunk", big))[1] is False
    assert computed == 3
    m = cache.metrics
    assert m.cache_hits.labels("m", "trunk")._value.get() == 1
    assert m.cache_misses.labels("m", "trunk")._value.get() == 3
    assert m.cache_too_large.labels("m", "trunk")._value.get() == 2


@pytest.mark.anyio
async def test_a_corrupt_stored_value_is_recomputed() -> None:
    backend = MemoryBackend(1 << 20)
    cache = Cache(backend, ttl_s=60, max_item_bytes=1 << 20)
    await backend.set("k", b"\x80\x04pickle-ish garbage", 60)

    async def compute() -> Bundle:
        return Bundle({}, {"a": np.ones(2)})

    value, reused = await cache.get_or_compute("k", "m", "branch", compute)
    assert not reused and value.arrays["a"].tolist() == [1.0, 1.0]
    assert cache.metrics.cache_errors.labels("memory", "decode")._value.get() == 1
    assert (await cache.get_or_compute("k", "m", "branch", compute))[1]  # overwritten


class CountingBackend(MemoryBackend):
    """Stands in for Redis: counts the lookups that reach it."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await super().get(key)


@pytest.mark.anyio
async def test_the_local_tier_answers_without_the_shared_store() -> None:
    shared = CountingBackend()
    one = Cache(shared, ttl_s=60, max_item_bytes=1 << 20, local_max_bytes=10_000)
    other = Cache(shared, ttl_s=60, max_item_bytes=1 << 20, local_max_bytes=10_000)

    async def compute() -> Bundle:
        return Bundle({}, {"a": np.arange(4, dtype=np.float32)})

    await one.get_or_compute("k", "m", "trunk", compute)
    assert shared.gets == 1  # the miss looked in the shared store once
    value, reused = await one.get_or_compute("k", "m", "trunk", compute)
    assert reused and shared.gets == 1  # then from the local tier alone
    assert one.metrics.cache_local_hits._value.get() == 1
    with pytest.raises(ValueError, match="read-only"):
        value.arrays["a"][0] = 1.0  # shared by every request that finds it

    # Another replica finds it in the shared store once, then keeps it too.
    for _ in range(2):
        value, reused = await other.get_or_compute("k", "m", "trunk", compute)
        assert reused and value.arrays["a"].tolist() == [0, 1, 2, 3]
    assert shared.gets == 2
    assert other.status().detail["local_entries"] == 1


@pytest.mark.anyio
async def test_the_local_tier_is_bounded_and_skips_unreadable_values() -> None:
    shared = CountingBackend()
    cache = Cache(shared, ttl_s=60, max_item_bytes=1 << 20, local_max_bytes=6_000)
    for i in range(5):
        await cache.put(f"k{i}", "m", "trunk", Bundle({}, {"a": np.zeros(256, np.float32)}))
    assert cache.local is not None
    assert cache.local.bytes <= 6_000 and len(cache.local) < 5  # the oldest went
    assert await cache.load("k4", "m", "trunk") is not None

    await shared.set("bad", b"garbage", 60)
    assert await cache.load("bad", "m", "trunk") is None
    assert cache.local.get("bad") is None  # never kept: looked up again next time


@pytest.mark.anyio
async def test_a_well_formed_value_its_writer_did_not_stamp_is_a_miss() -> None:
    """Another program's bundle under our key, or ours with its arrays changed: recomputed."""
    backend = MemoryBackend(1 << 20)
    cache = Cache(backend, ttl_s=60, max_item_bytes=1 << 20)

    async def compute() -> Bundle:
        return Bundle({}, {"a": np.ones((2, 3), np.float32)})

    await backend.set("k", encode(Bundle({}, {"a": np.zeros((2, 3), np.float32)})), 60)
    value, reused = await cache.get_or_compute("k", "m", "trunk", compute)
    assert not reused and value.arrays["a"].sum() == 6
    ours = decode(await backend.get("k") or b"")
    assert (await cache.get_or_compute("k", "m", "trunk", compute))[1]  # stamped: trusted
    retyped = Bundle(ours.meta, {"a": np.zeros((2, 3), np.int8)})
    await backend.set("k", encode(retyped), 60)
    assert not (await cache.get_or_compute("k", "m", "trunk", compute))[1]
    assert cache.metrics.cache_errors.labels("memory", "decode")._value.get() == 2
