"""Prefect flows that wire vrme's tasks together, and the ``vrme`` command line."""

import os

# Library logs (logger "vrme") go to Prefect's run logs and the UI. Must be set before Prefect
# configures logging, i.e. before it is imported.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "vrme")
# The library also logs outside flow runs (direct CLI commands): no warning for that.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
