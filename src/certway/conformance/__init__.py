"""Conformance harnesses: run public test-vector suites through certway's validation engine."""
