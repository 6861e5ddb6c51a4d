"""The run contract: checkpoint, run layout, eval record."""
