"""Helpers shared by the test folders: import them as `tests.support.<module>` (the repository root
is on `sys.path` through pytest's `pythonpath`, and subprocesses get it through `PYTHONPATH`)."""
