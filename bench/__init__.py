"""pocketnoc benchmarks: measure and report (never part of the test run); `python -m bench.run` writes BENCHMARKS.md."""
