"""What the tests and the benchmarks use to drive the product; not part of the product.

`chart`: the Helm chart rendered with `helm template` (no cluster needed).
`operator_process`: the operator run as a subprocess with the chart's least-privilege identity.

Imported as `tests.harness` from the repository root (pytest's `pythonpath`, and
`python -m benchmarks.bench_operator`).
"""
