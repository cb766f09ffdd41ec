"""Benchmarks: python -m bench.<component>; each prints figures, the last line one JSON object."""
