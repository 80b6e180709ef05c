"""The sealed-results benchmark suite: ``python -m benchmarks`` (see ``benchmarks/run.py``)."""
