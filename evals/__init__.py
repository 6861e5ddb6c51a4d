"""Evaluation: decoding, sandboxed code execution, and the eval suites."""
