"""The smallest complete use: a keyring, a local handler, a token that reveals nothing.

python examples/basic_local.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sealed_results as sr
from sealed_results.keyproviders.local import create_keyring

with tempfile.TemporaryDirectory() as scratch:
    keys = create_keyring(Path(scratch) / "keys.json")  # or: sealed-results keys init keys.json
    handler = sr.handlers.LocalHandler(
        root=str(Path(scratch) / "results"), keyprovider=sr.keyproviders.LocalKeyring(keys)
    )
    token = handler.write({"customer": "ada@example.com", "score": 0.97})
    print("the orchestrator stores:", token)
    print("you read back:", handler.read(token))
