"""Triton-facing parts: config writing and the server."""
