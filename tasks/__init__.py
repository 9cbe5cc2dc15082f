"""Prefect tasks: thin wrappers around vrme library calls (retries, caching, logging)."""

import os

# Library logs (logger "vrme") go to Prefect's run logs and the UI.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "vrme")
