"""Synthetic datasets: generated faces and events in the real layouts, and synthetic feature tables
for tests."""
