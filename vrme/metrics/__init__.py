"""Metrics: the Spot-Then-Recognize Score (STRS)."""
