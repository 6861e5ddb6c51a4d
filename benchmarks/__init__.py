"""Measured comparisons that print JSON; never part of the test pass/fail."""
