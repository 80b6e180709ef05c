"""Example sealed-results plugin: the ``example-dir`` handler and ``example-static`` key provider.

Importing this package imports nothing heavy; sealed-results loads each class through its entry
point only when a profile or ``sealed_results.handler(...)`` names it.
"""

__version__ = "0.1.0"
