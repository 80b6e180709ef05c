"""CachingKeyProvider: bounded data-key reuse and the unwrap cache, counted through a real
provider (CountingKeyProvider around a LocalKeyring), never timed."""

from __future__ import annotations

import io
import os
import pickle
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sealed_results.errors import ConfigError, IntegrityError
from sealed_results.format import Stanza, read_header
from sealed_results.handlers import LocalHandler
from sealed_results.keyproviders import MultiKeyProvider, ProviderMaterials, as_materials
from sealed_results.keyproviders.caching import CachingKeyProvider
from sealed_results.keyproviders.local import LocalKeyring, create_keyring
from sealed_results.testing import CountingKeyProvider


class Clock:
    """A hand-moved clock: the test seam for max_age and unwrap_ttl."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted(keyring: LocalKeyring) -> CountingKeyProvider:
    return CountingKeyProvider(keyring)


def write_many(root: Path, provider: object, n: int = 1000) -> tuple[LocalHandler, list[str]]:
    handler = LocalHandler(root=str(root), keyprovider=provider, segment_size=1 << 16)  # type: ignore[arg-type]
    return handler, [handler.write({"i": i}) for i in range(n)]


# -- the point of it all -------------------------------------------------------------------------
def test_1000_writes_cost_a_handful_of_data_key_requests_with_caching(
    local_root: Path, counted: CountingKeyProvider
) -> None:
    handler, tokens = write_many(local_root, CachingKeyProvider(counted))
    # One fresh key for the token keyset (written with an unknown size), one for the results.
    assert counted.calls["generate"] <= 3
    assert [handler.read(t) for t in tokens[:50]] == [{"i": i} for i in range(50)]
    assert counted.calls["unwrap"] <= 1  # the keys this process made seed the unwrap cache
    # A new process-like reader (no caches) pays one unwrap per distinct data key, not per blob.
    fresh = CountingKeyProvider(counted.inner)
    reader = LocalHandler(root=str(local_root), keyprovider=CachingKeyProvider(fresh))
    assert [reader.read(t) for t in tokens] == [{"i": i} for i in range(1000)]
    assert fresh.calls["unwrap"] <= 3


@pytest.mark.parametrize("setting", ["no cache", "max_age=0", "max_uses=0", "max_bytes=0"])
def test_without_caching_every_write_asks_the_provider(
    local_root: Path, counted: CountingKeyProvider, setting: str
) -> None:
    provider: object = counted
    if setting != "no cache":
        name, value = setting.split("=")
        provider = CachingKeyProvider(counted, **{name: int(value)})  # type: ignore[arg-type]
    write_many(local_root, provider)
    assert counted.calls["generate"] == 1000 + 1  # plus the keyset's own key


# -- bounds -------------------------------------------------------------------------------------
def test_max_uses(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted, max_uses=10)
    keys = [cache.new_data_key(100) for _ in range(100)]
    assert counted.calls["generate"] == 10
    assert max(Counter(k.key_id for k in keys).values()) == 10


def test_max_bytes(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted, max_bytes=1000)
    for _ in range(100):
        cache.new_data_key(100)
    assert counted.calls["generate"] == 10


def test_unknown_or_large_sizes_get_a_key_of_their_own(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted, max_bytes=1000)
    small = cache.new_data_key(10)
    streamed = [cache.new_data_key(None) for _ in range(3)]  # counts as max_bytes
    large = cache.new_data_key(1000)
    assert len({k.key_id for k in [small, *streamed, large]}) == 5
    assert cache.new_data_key(10).key_id == small.key_id  # the cached key is untouched
    assert counted.calls["generate"] == 5


def test_max_age(counted: CountingKeyProvider) -> None:
    clock = Clock()
    cache = CachingKeyProvider(counted, max_age=60, clock=clock)
    first = cache.new_data_key(10)
    clock.now += 59.9
    assert cache.new_data_key(10).key_id == first.key_id
    clock.now += 0.1
    assert cache.new_data_key(10).key_id != first.key_id
    assert counted.calls["generate"] == 2


def test_rotate_and_clear_drop_the_cached_key(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted)
    first = cache.new_data_key(10)
    cache.rotate()
    second = cache.new_data_key(10)
    assert second.key_id != first.key_id and counted.calls["rotate"] == 1
    cache.clear()
    assert cache.new_data_key(10).key_id != second.key_id


def test_negative_bounds_are_refused(counted: CountingKeyProvider) -> None:
    with pytest.raises(ConfigError):
        CachingKeyProvider(counted, max_uses=-1)


# -- the unwrap cache -----------------------------------------------------------------------------
def test_unwrap_cache_hits_expire_and_evict(keyring: LocalKeyring) -> None:
    made = [ProviderMaterials(keyring).new_data_key(10) for _ in range(3)]
    counted = CountingKeyProvider(keyring)
    clock = Clock()
    cache = CachingKeyProvider(counted, unwrap_cache_size=2, unwrap_ttl=30, clock=clock)
    for _ in range(10):
        assert cache.open_data_key(made[0].key_id, made[0].stanzas) == made[0].plaintext
    assert counted.calls["unwrap"] == 1
    clock.now += 30
    cache.open_data_key(made[0].key_id, made[0].stanzas)
    assert counted.calls["unwrap"] == 2  # expired
    cache.open_data_key(made[1].key_id, made[1].stanzas)
    cache.open_data_key(made[2].key_id, made[2].stanzas)  # evicts made[0], the least recent
    cache.open_data_key(made[0].key_id, made[0].stanzas)
    assert counted.calls["unwrap"] == 5


def test_unwrap_cache_off(keyring: LocalKeyring) -> None:
    dk = ProviderMaterials(keyring).new_data_key(10)
    for setting in ({"unwrap_cache_size": 0}, {"unwrap_ttl": 0}):
        counted = CountingKeyProvider(keyring)
        cache = CachingKeyProvider(counted, **setting)  # type: ignore[arg-type]
        for _ in range(5):
            cache.open_data_key(dk.key_id, dk.stanzas)
        assert counted.calls["unwrap"] == 5


def test_changed_stanzas_never_hit_the_cache(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted)
    dk = cache.new_data_key(10)
    assert cache.open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
    flipped = tuple(Stanza(s.kind, s.wrapped[:-1] + bytes([s.wrapped[-1] ^ 1])) for s in dk.stanzas)
    with pytest.raises(IntegrityError):
        cache.open_data_key(dk.key_id, flipped)
    with pytest.raises(IntegrityError):
        cache.open_data_key(os.urandom(16), dk.stanzas)


# -- concurrency, composites, pickling, the format -------------------------------------------
def test_threads_share_keys_within_bounds(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted, max_uses=100)
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: cache.new_data_key(10), range(2000)))
    uses = Counter(k.key_id for k in keys)
    assert max(uses.values()) <= 100
    assert counted.calls["generate"] == len(uses) == 20


def test_caching_around_a_multi_provider(keyring: LocalKeyring, tmp_path: Path) -> None:
    second = CountingKeyProvider(LocalKeyring(create_keyring(tmp_path / "second.json")))
    first = CountingKeyProvider(keyring)
    cache = CachingKeyProvider(MultiKeyProvider(first, second))
    keys = [cache.new_data_key(100) for _ in range(1000)]
    assert first.calls["generate"] == 1 and second.calls["wrap"] == 1
    assert len(keys[-1].stanzas) == 2
    assert MultiKeyProvider(second).open_data_key(keys[-1].key_id, keys[-1].stanzas) == (
        keys[0].plaintext
    )


def test_pickle_carries_no_cached_key(counted: CountingKeyProvider) -> None:
    cache = CachingKeyProvider(counted.inner, max_uses=7)
    dk = cache.new_data_key(10)
    data = pickle.dumps(cache)
    assert dk.plaintext not in data
    copy = pickle.loads(data)
    assert as_materials(copy).new_data_key(10).key_id != dk.key_id  # starts empty
    assert as_materials(copy).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext


def test_blobs_sharing_a_data_key_still_get_their_own_payload_keys(
    local_root: Path, keyring: LocalKeyring
) -> None:
    handler, tokens = write_many(local_root, CachingKeyProvider(keyring), n=2)
    blobs = [p.read_bytes() for p in sorted(local_root.iterdir()) if p.name != "keyset"]
    headers = [read_header(io.BytesIO(b)) for b in blobs]
    assert headers[0].key_id == headers[1].key_id  # one cached data key ...
    assert headers[0].fixed[40:72] != headers[1].fixed[40:72]  # ... fresh salts
    assert headers[0].commitment != headers[1].commitment  # ... so distinct derived keys
    assert [handler.read(t) for t in tokens] == [{"i": 0}, {"i": 1}]
