"""Decode: per-frame scores to spotted intervals with emotions."""
