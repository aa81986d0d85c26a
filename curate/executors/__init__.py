"""Executors decide where tasks run; the task contract (curate.task) does the work."""
