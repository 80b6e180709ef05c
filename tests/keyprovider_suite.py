"""KeyProviderSuite: the conformance tests every key provider must pass.

Subclass it in a test module and define a ``provider`` fixture (a fresh provider with a fresh
key for each test). Optional fixtures: ``provider_secrets`` (strings that must never be in a
pickle, message or repr: tokens, credentials) and ``provider_private`` (strings that may travel
in a pickle to rebuild the provider but must never be in a message or repr: addresses, key
names). Set ``primitives = False`` for composites that only work on stanzas.
"""

from __future__ import annotations

import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from sealed_results.errors import IntegrityError, SealedResultsError
from sealed_results.keyproviders.base import DataKey, KeyProvider, Stanza


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def with_wrapped(stanzas: tuple[Stanza, ...], change: Any) -> tuple[Stanza, ...]:
    return tuple(Stanza(s.kind, change(s.wrapped)) for s in stanzas)


class KeyProviderSuite:
    primitives: ClassVar[bool] = True

    @pytest.fixture
    def provider(self) -> KeyProvider:
        raise NotImplementedError("subclasses define the provider fixture")

    @pytest.fixture
    def provider_secrets(self) -> list[str]:
        return []

    @pytest.fixture
    def provider_private(self) -> list[str]:
        return []

    # -- stanza level ----------------------------------------------------------------------------
    def test_new_data_key_round_trip(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(1000)
        assert isinstance(dk, DataKey)
        assert len(dk.plaintext) == 32 and len(dk.key_id) == 16 and dk.stanzas
        kinds = {p.kind for p in provider.providers()}
        assert {s.kind for s in dk.stanzas} <= kinds
        assert provider.open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

    def test_unknown_size_round_trip(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(None)
        assert provider.open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

    def test_fresh_keys_differ(self, provider: KeyProvider) -> None:
        a, b = provider.new_data_key(None), provider.new_data_key(None)
        assert a.plaintext != b.plaintext and a.key_id != b.key_id

    def test_stanza_moved_to_other_key_id(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(None)
        with pytest.raises(IntegrityError):
            provider.open_data_key(os.urandom(16), dk.stanzas)

    @pytest.mark.parametrize("where", ["first", "second", "middle", "last"])
    def test_flipped_byte(self, provider: KeyProvider, where: str) -> None:
        dk = provider.new_data_key(None)

        def change(wrapped: bytes) -> bytes:
            index = {"first": 0, "second": 1, "middle": len(wrapped) // 2, "last": -1}[where]
            return flip(wrapped, index % len(wrapped))

        with pytest.raises(IntegrityError):
            provider.open_data_key(dk.key_id, with_wrapped(dk.stanzas, change))

    @pytest.mark.parametrize("change", ["truncated", "extended", "one byte", "random"])
    def test_malformed_stanza(self, provider: KeyProvider, change: str) -> None:
        dk = provider.new_data_key(None)
        make = {
            "truncated": lambda w: w[: len(w) // 2],
            "extended": lambda w: w + b"\x00" * 16,
            "one byte": lambda w: w[:1],
            "random": lambda w: os.urandom(len(w)),
        }[change]
        with pytest.raises(IntegrityError):
            provider.open_data_key(dk.key_id, with_wrapped(dk.stanzas, make))

    def test_stanza_of_unknown_kind(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(None)
        foreign = tuple(Stanza("no-such-kind", s.wrapped) for s in dk.stanzas)
        with pytest.raises(IntegrityError):
            provider.open_data_key(dk.key_id, foreign)

    def test_rewrap_keeps_the_key(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(None)
        rewrapped = provider.rewrap_stanzas(dk.key_id, dk.stanzas)
        assert [s.kind for s in rewrapped] == [s.kind for s in dk.stanzas]
        assert provider.open_data_key(dk.key_id, rewrapped) == dk.plaintext

    def test_rotate_then_rewrap(self, provider: KeyProvider) -> None:
        old = provider.new_data_key(None)
        provider.rotate()
        assert provider.open_data_key(old.key_id, old.stanzas) == old.plaintext
        rewrapped = provider.rewrap_stanzas(old.key_id, old.stanzas)
        assert provider.open_data_key(old.key_id, rewrapped) == old.plaintext
        new = provider.new_data_key(None)
        assert provider.open_data_key(new.key_id, new.stanzas) == new.plaintext

    def test_rewrap_never_blesses_a_moved_stanza(self, provider: KeyProvider) -> None:
        # A server-side rewrap (Vault) cannot check a binding inside the plaintext; what must
        # hold is that the moved stanza still fails to open under the other key id.
        dk = provider.new_data_key(None)
        other = os.urandom(16)
        try:
            moved = provider.rewrap_stanzas(other, dk.stanzas)
        except IntegrityError:
            return
        with pytest.raises(IntegrityError):
            provider.open_data_key(other, moved)

    def test_rewrap_refuses_malformed(self, provider: KeyProvider) -> None:
        dk = provider.new_data_key(None)
        with pytest.raises(IntegrityError):
            provider.rewrap_stanzas(dk.key_id, with_wrapped(dk.stanzas, lambda w: w[:1]))

    def test_concurrent_use(self, provider: KeyProvider) -> None:
        def work(_: int) -> bool:
            dk = provider.new_data_key(100)
            return provider.open_data_key(dk.key_id, dk.stanzas) == dk.plaintext

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(work, range(24)))

    # -- primitives --------------------------------------------------------------------------
    def test_wrap_unwrap_with_any_context(self, provider: KeyProvider) -> None:
        if not self.primitives:
            pytest.skip("a composite works on stanzas only")
        for context in (b"\x00", os.urandom(16), os.urandom(64)):
            data_key = os.urandom(32)
            wrapped = provider.wrap_data_key(data_key, context)
            assert provider.unwrap_data_key(wrapped, context) == data_key
            with pytest.raises(IntegrityError):
                provider.unwrap_data_key(wrapped, flip(context, 0))

    def test_generate_matches_unwrap(self, provider: KeyProvider) -> None:
        if not self.primitives:
            pytest.skip("a composite works on stanzas only")
        context = os.urandom(16)
        data_key, wrapped = provider.generate_data_key(context)
        assert len(data_key) == 32
        assert provider.unwrap_data_key(wrapped, context) == data_key
        assert provider.unwrap_data_key(provider.rewrap_data_key(wrapped, context), context) == (
            data_key
        )

    def test_context_is_validated(self, provider: KeyProvider) -> None:
        if not self.primitives:
            pytest.skip("a composite works on stanzas only")
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(32), b"")
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(32), os.urandom(65))
        with pytest.raises(ValueError):
            provider.wrap_data_key(os.urandom(16), b"ctx")

    # -- travelling and talking ------------------------------------------------------------------
    def test_pickle_round_trip_without_secrets(
        self, provider: KeyProvider, provider_secrets: list[str]
    ) -> None:
        dk = provider.new_data_key(None)
        data = pickle.dumps(provider)
        assert dk.plaintext not in data
        for secret in provider_secrets:
            assert secret.encode() not in data
        copy = pickle.loads(data)
        assert copy.open_data_key(dk.key_id, dk.stanzas) == dk.plaintext
        new = copy.new_data_key(None)
        assert provider.open_data_key(new.key_id, new.stanzas) == new.plaintext

    def test_repr_describe_and_errors_are_clean(
        self, provider: KeyProvider, provider_secrets: list[str], provider_private: list[str]
    ) -> None:
        dk = provider.new_data_key(None)
        texts = [repr(provider), repr(dk), str(provider.describe())]
        for bad in (lambda: provider.open_data_key(os.urandom(16), dk.stanzas),):
            with pytest.raises(SealedResultsError) as info:
                bad()
            texts.append(f"{info.value} {info.value!r}")
        assert provider.describe()["kind"] == provider.kind
        for text in texts:
            for value in [*provider_secrets, *provider_private, dk.key_id.hex()]:
                assert value not in text
