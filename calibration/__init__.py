"""Calibration recipes, installed as the package data edgemoe.calibration_recipes (see edgemoe/packaged.py)."""
