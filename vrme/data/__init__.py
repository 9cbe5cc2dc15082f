"""Ingest: dataset layouts, label spreadsheets, frame folders, the manifest and labels tables, and the union of several datasets (MEGC protocol)."""
