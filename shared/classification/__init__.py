"""Vertical classification: taxonomies, tier 1 (prototypes and few-shot examples), labelling at write
time, calibration, people's corrections, and the rules that merge labels of different tiers."""
