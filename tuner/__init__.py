"""Autotuner for NVIDIA Triton Inference Server model configurations."""

from __future__ import annotations

__version__ = "0.1.0"
