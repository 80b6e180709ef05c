"""A test kit for plugin authors (and this project's own tests); needs pytest.

- ``StoreSuite``: subclass it with a ``store`` fixture to check a Store against the contract.
- ``KeyProviderSuite``: subclass it with a ``provider`` fixture to check a key provider (or key
  materials) against the contract.
- ``CountingKeyProvider``: a real provider wrapped to count its round trips.
- ``leakscan``: a session-wide scan that no message, repr or log line of ours carries a
  registered secret (roots, object names, key material, plaintext markers).

docs/config.md ("Writing a plugin") shows each in use.
"""

from __future__ import annotations

from sealed_results.testing import leakscan
from sealed_results.testing.doubles import CountingKeyProvider
from sealed_results.testing.keyproviders import KeyProviderSuite
from sealed_results.testing.stores import StoreSuite

__all__ = ["CountingKeyProvider", "KeyProviderSuite", "StoreSuite", "leakscan"]
