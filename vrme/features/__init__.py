"""Align and features: face landmarks and crops (align), ROIs, Farneback optical flow, the
per-window ROI flow features and their Parquet cache."""
