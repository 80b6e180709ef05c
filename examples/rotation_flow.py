"""Key rotation as a scheduled Prefect flow (the same steps as examples/rotation_script.py).

    python examples/rotation_flow.py            # serve it: rotate monthly, retire a day later
    python examples/rotation_flow.py --once     # one rotation now, then exit

Each step is a task that calls ``sealed_results.maintenance`` on the worker, where the profile
and its credentials are. What Prefect's API receives is the task's return value: counts and
states only (``_summary``), never object names, key ids or roots, so it is safe to persist.
A run that crashes halfway is resumed by the next one from the rotation journal in the store,
without a second key version. Retire refuses (the task fails) while anything still uses an old
key version or the rotation finished less than five minutes ago.
"""

from __future__ import annotations

import sys
from typing import Any

from prefect import flow, task

import sealed_results as sr
from sealed_results import maintenance

PROFILE: str | None = None  # None: $SEALED_RESULTS_PROFILE, else the config's default_profile
_SAFE = (
    "state", "resumed", "rewrapped", "already_current", "skipped", "failed", "token_key_added",
    "refused", "scanned", "checked", "ok", "objects", "outdated", "unreadable", "exit_code",
)  # fmt: skip


def _summary(report: Any) -> dict[str, Any]:
    """Counts and states only: nothing that names an object, a key or a root."""
    data = report.to_dict()
    return {key: data[key] for key in _SAFE if key in data}


@task(retries=2, retry_delay_seconds=60)
def rotate_keys(profile: str | None) -> dict[str, Any]:
    report = maintenance.rotate(sr.from_profile(profile), apply=True)
    if report.exit_code:
        # A retry resumes the same rotation (no second key version).
        raise RuntimeError(f"rotation incomplete: {report.failed} failed, {report.skipped} skipped")
    return _summary(report)


@task
def inventory(profile: str | None) -> dict[str, Any]:
    return _summary(maintenance.inventory(sr.from_profile(profile)))


@task
def retire_old_versions(profile: str | None) -> dict[str, Any]:
    report = maintenance.retire(sr.from_profile(profile), apply=True)
    if report.refused:
        raise RuntimeError("retire refused: old key versions are still in use (see `inventory`)")
    return _summary(report)


@flow(name="sealed-results-rotation", log_prints=True)
def rotation(profile: str | None = PROFILE) -> dict[str, Any]:
    before = inventory(profile)
    rotated = rotate_keys(profile)
    after = inventory(profile)
    print(f"rotated: {rotated}; outdated before {before['outdated']}, after {after['outdated']}")
    return {"rotate": rotated, "after": after}


@flow(name="sealed-results-retire", log_prints=True)
def retirement(profile: str | None = PROFILE) -> dict[str, Any]:
    return retire_old_versions(profile)


if __name__ == "__main__":
    if "--once" in sys.argv:
        rotation()
    else:
        from prefect import serve

        serve(
            rotation.to_deployment(name="monthly", cron="0 3 1 * *"),
            retirement.to_deployment(name="monthly-retire", cron="0 3 2 * *"),
        )
