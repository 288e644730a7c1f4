"""Shared pytest configuration. The repository root is importable (`pythonpath` in pyproject.toml),
for the `tests.harness` and `benchmarks` helpers."""
