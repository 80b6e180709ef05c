"""A Prefect flow whose results are sealed in your own storage (see docs/prefect.md).

Run with a profile in sealed-results.toml (or SEALED_RESULTS_CONFIG) and a Prefect API:
    pip install "sealed-results[prefect]"
    python examples/prefect_pipeline.py
Prefect's API then stores only opaque storage keys and the profile name; the values are
sealed in the profile's store.
"""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from sealed_results.prefect import sealed, sealed_flow


@task(**sealed())
def extract(region: str) -> list[dict[str, object]]:
    return [{"id": 1041, "email": "ada@example.com", "region": region}]


@task(**sealed(cache_policy=INPUTS + TASK_SOURCE, retries=2, retry_delay_seconds=1))
def score(rows: list[dict[str, object]]) -> dict[str, float]:
    return {"auc": 0.9132, "rows": float(len(rows))}


@flow(**sealed_flow())
def pipeline(region: str = "emea") -> dict[str, float]:
    return score(extract(region))


if __name__ == "__main__":
    print(pipeline())
