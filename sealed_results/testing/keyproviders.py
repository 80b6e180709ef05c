"""KeyProviderSuite: the conformance tests every key provider must pass.

Subclass it in a test module and define a ``provider`` fixture (a fresh provider with a fresh
key for each test). Optional fixtures: ``provider_secrets`` (strings that must never be in a
pickle, message or repr: tokens, credentials) and ``provider_private`` (strings that may travel
in a pickle to rebuild the provider but must never be in a message or repr: addresses, key
names). The fixture may return key materials (``MultiKeyProvider``, ``CachingKeyProvider``):
the data-key tests then run on them, and the primitive tests are skipped, since materials have
no wrapping of their own.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from sealed_results.errors import IntegrityError, SealedResultsError
from sealed_results.format.stanza import Stanza
from sealed_results.keyproviders.base import KeyProvider
from sealed_results.keyproviders.materials import DataKey, KeyMaterials, as_materials


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def with_wrapped(stanzas: tuple[Stanza, ...], change: Any) -> tuple[Stanza, ...]:
    return tuple(Stanza(s.kind, change(s.wrapped)) for s in stanzas)


class KeyProviderSuite:
    #: False for a provider whose key cannot rotate (its rotate() raises KeyProviderError).
    rotates: ClassVar[bool] = True

    @pytest.fixture
    def provider(self) -> KeyProvider | KeyMaterials:
        raise NotImplementedError("subclasses define the provider fixture")

    @pytest.fixture
    def provider_secrets(self) -> list[str]:
        return []

    @pytest.fixture
    def provider_private(self) -> list[str]:
        return []

    # -- stanza level ----------------------------------------------------------------------------
    def test_new_data_key_round_trip(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(1000)
        assert isinstance(dk, DataKey)
        assert len(dk.plaintext) == 32 and len(dk.key_id) == 16 and dk.stanzas
        kinds = {p.kind for p in as_materials(provider).providers()}
        assert {s.kind for s in dk.stanzas} <= kinds
        assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

    def test_unknown_size_round_trip(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(None)
        assert as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

    def test_fresh_keys_differ(self, provider: Any) -> None:
        a, b = as_materials(provider).new_data_key(None), as_materials(provider).new_data_key(None)
        assert a.plaintext != b.plaintext and a.key_id != b.key_id

    def test_stanza_moved_to_other_key_id(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(None)
        with pytest.raises(IntegrityError):
            as_materials(provider).open_data_key(os.urandom(16), dk.stanzas)

    @pytest.mark.parametrize("where", ["first", "second", "middle", "last"])
    def test_flipped_byte(self, provider: Any, where: str) -> None:
        dk = as_materials(provider).new_data_key(None)

        def change(wrapped: bytes) -> bytes:
            index = {"first": 0, "second": 1, "middle": len(wrapped) // 2, "last": -1}[where]
            return flip(wrapped, index % len(wrapped))

        with pytest.raises(IntegrityError):
            as_materials(provider).open_data_key(dk.key_id, with_wrapped(dk.stanzas, change))

    @pytest.mark.parametrize("change", ["truncated", "extended", "one byte", "random"])
    def test_malformed_stanza(self, provider: Any, change: str) -> None:
        dk = as_materials(provider).new_data_key(None)
        make = {
            "truncated": lambda w: w[: len(w) // 2],
            "extended": lambda w: w + b"\x00" * 16,
            "one byte": lambda w: w[:1],
            "random": lambda w: os.urandom(len(w)),
        }[change]
        with pytest.raises(IntegrityError):
            as_materials(provider).open_data_key(dk.key_id, with_wrapped(dk.stanzas, make))

    def test_stanza_of_unknown_kind(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(None)
        foreign = tuple(Stanza("no-such-kind", s.wrapped) for s in dk.stanzas)
        with pytest.raises(IntegrityError):
            as_materials(provider).open_data_key(dk.key_id, foreign)

    def test_rewrap_keeps_the_key(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(None)
        rewrapped = as_materials(provider).rewrap_stanzas(dk.key_id, dk.stanzas)
        assert [s.kind for s in rewrapped] == [s.kind for s in dk.stanzas]
        assert as_materials(provider).open_data_key(dk.key_id, rewrapped) == dk.plaintext

    def test_rotate_then_rewrap(self, provider: Any) -> None:
        if not self.rotates:
            pytest.skip("this provider's key cannot rotate")
        old = as_materials(provider).new_data_key(None)
        provider.rotate()
        assert as_materials(provider).open_data_key(old.key_id, old.stanzas) == old.plaintext
        rewrapped = as_materials(provider).rewrap_stanzas(old.key_id, old.stanzas)
        assert as_materials(provider).open_data_key(old.key_id, rewrapped) == old.plaintext
        new = as_materials(provider).new_data_key(None)
        assert as_materials(provider).open_data_key(new.key_id, new.stanzas) == new.plaintext

    def test_rewrap_never_blesses_a_moved_stanza(self, provider: Any) -> None:
        # A server-side rewrap (Vault) cannot check a binding inside the plaintext; what must
        # hold is that the moved stanza still fails to open under the other key id.
        dk = as_materials(provider).new_data_key(None)
        other = os.urandom(16)
        try:
            moved = as_materials(provider).rewrap_stanzas(other, dk.stanzas)
        except IntegrityError:
            return
        with pytest.raises(IntegrityError):
            as_materials(provider).open_data_key(other, moved)

    def test_rewrap_refuses_malformed(self, provider: Any) -> None:
        dk = as_materials(provider).new_data_key(None)
        with pytest.raises(IntegrityError):
            as_materials(provider).rewrap_stanzas(
                dk.key_id, with_wrapped(dk.stanzas, lambda w: w[:1])
            )

    def test_concurrent_use(self, provider: Any) -> None:
        def work(_: int) -> bool:
            dk = as_materials(provider).new_data_key(100)
            return as_materials(provider).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(24)))

    # -- primitives --------------------------------------------------------------------------
    def test_wrap_unwrap_with_any_context(self, provider: Any) -> None:
        if isinstance(provider, KeyMaterials):
            pytest.skip("key materials have no primitives of their own")
        for context in (b"\x00", os.urandom(16), os.urandom(64)):
            data_key = os.urandom(32)
            wrapped = provider.wrap_data_key(data_key, context)
            assert provider.unwrap_data_key(wrapped, context) == data_key
            with pytest.raises(IntegrityError):
                provider.unwrap_data_key(wrapped, flip(context, 0))

    def test_generate_matches_unwrap(self, provider: Any) -> None:
        if isinstance(provider, KeyMaterials):
            pytest.skip("key materials have no primitives of their own")
        context = os.urandom(16)
        data_key, wrapped = provider.generate_data_key(context)
        assert len(data_key) == 32
        assert provider.unwrap_data_key(wrapped, context) == data_key
        assert provider.unwrap_data_key(provider.rewrap_data_key(wrapped, context), context) == (
            data_key
        )

    def test_context_is_validated(self, provider: Any) -> None:
        if isinstance(provider, KeyMaterials):
            pytest.skip("key materials have no primitives of their own")
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(32), b"")
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(32), os.urandom(65))
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(16), b"ctx")

    # -- travelling and talking ------------------------------------------------------------------
    def test_pickle_round_trip_without_secrets(
        self, provider: Any, provider_secrets: list[str]
    ) -> None:
        dk = as_materials(provider).new_data_key(None)
        data = pickle.dumps(provider)
        assert dk.plaintext not in data
        for secret in provider_secrets:
            assert secret.encode() not in data
        copy = pickle.loads(data)
        assert as_materials(copy).open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
        new = as_materials(copy).new_data_key(None)
        assert as_materials(provider).open_data_key(new.key_id, new.stanzas) == new.plaintext

    def test_repr_describe_and_errors_are_clean(
        self, provider: Any, provider_secrets: list[str], provider_private: list[str]
    ) -> None:
        dk = as_materials(provider).new_data_key(None)
        texts = [repr(provider), repr(dk), str(provider.describe())]
        attempts: list[Callable[[], object]] = [
            lambda: as_materials(provider).open_data_key(os.urandom(16), dk.stanzas)
        ]
        for bad in attempts:
            with pytest.raises(SealedResultsError) as info:
                bad()
            texts.append(f"{info.value} {info.value!r}")
        if not isinstance(provider, KeyMaterials):
            assert provider.describe()["kind"] == provider.kind
        for text in texts:
            for value in [*provider_secrets, *provider_private, dk.key_id.hex()]:
                assert value not in text
