"""Prefect tasks: thin wrappers around vrme library calls (retries, caching, logging)."""

import logging
import os

# Library logs (logger "vrme") go to Prefect's run logs and the UI: Prefect attaches its
# handlers to the loggers named here when it configures logging (at import).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "vrme")
# The library also logs outside flow runs (direct CLI commands): no warning for that.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
logging.getLogger("vrme").setLevel(os.environ.get("VRME_LOG_LEVEL", "INFO").upper())
