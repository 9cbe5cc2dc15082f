"""Report: the run's record (run.json), tables, plots, report.md and report.html."""
