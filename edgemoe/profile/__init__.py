"""Latency profiling of an engine bundle: per mask and precision, where every microsecond goes.

Torch-free (numpy, onnxruntime, rich; matplotlib for the plots when present), so the same code runs
from ``edgemoe profile`` on a workstation and from ``scripts/profile_latency.py`` on a device.
"""
