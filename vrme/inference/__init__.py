"""Inference: trained models on new videos (vrme predict / vrme spot)."""
