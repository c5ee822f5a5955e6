"""Target profiles, installed as the package data edgemoe.targets (see edgemoe/packaged.py)."""
