"""Key rotation and upkeep from Python: a maintenance script is a few lines.

```python
import sealed_results as sr
from sealed_results import maintenance

h = sr.from_profile("prod")
print(maintenance.inventory(h).to_dict())          # per key provider and version, headers only
report = maintenance.rotate(h, apply=True)        # new KEK version, rewrap all, new token key
assert report.exit_code == 0, report.failures     # resumable: run it again after a crash
maintenance.retire(h, apply=True)                 # refuses while anything uses an old version
maintenance.verify(h)                             # authenticate every blob, streaming
maintenance.gc(h, "90d", apply=True)              # delete results older than 90 days
```

Every operation returns a report dataclass with ``to_dict()`` and ``exit_code`` (the CLI's:
0 fine, 1 something failed or was refused). ``rotate``, ``retire`` and ``gc`` change nothing
unless ``apply=True``. Reports name stored objects only by their opaque reference (the object
name, random hex), never by content; ``inspect(h, reference_or_token)`` explains one.
docs/maintenance.md is the runbook.
"""

from __future__ import annotations

from sealed_results.maintenance._gc import GcReport, gc, parse_duration
from sealed_results.maintenance._inspect import Inspection, inspect
from sealed_results.maintenance._inventory import Inventory, inventory
from sealed_results.maintenance._journal import JOURNAL_NAME, Journal, RotationTakenOver
from sealed_results.maintenance._keys import ProviderState, provider_state, stanza_version
from sealed_results.maintenance._retire import RetireReport, retire
from sealed_results.maintenance._rotate import RotationReport, rotate
from sealed_results.maintenance._scan import Progress
from sealed_results.maintenance._verify import VerifyReport, verify

__all__ = [
    "JOURNAL_NAME",
    "GcReport",
    "Inspection",
    "Inventory",
    "Journal",
    "Progress",
    "ProviderState",
    "RetireReport",
    "RotationReport",
    "RotationTakenOver",
    "VerifyReport",
    "gc",
    "inspect",
    "inventory",
    "parse_duration",
    "provider_state",
    "retire",
    "rotate",
    "stanza_version",
    "verify",
]
