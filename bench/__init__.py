"""`make bench`: benchmarks of the whole pipeline on one machine (see README, "Performance")."""
