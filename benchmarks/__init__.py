"""Benchmarks: not tests, never run in CI. See benchmarks/README in RESULTS.md."""
