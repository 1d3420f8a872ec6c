"""`make bench`: benchmarks of the whole pipeline on one machine (see docs/performance.md)."""
