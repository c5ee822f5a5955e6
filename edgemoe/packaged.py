"""YAML files shipped inside the package: target profiles and calibration recipes.

They live at the top of the source tree (``engines/*.yaml``, ``calibration/*.yaml``, where the
product's layout puts them) and reach an installed wheel as the subpackages ``edgemoe.targets``
and ``edgemoe.calibration_recipes`` (``pyproject.toml`` maps them with ``package-dir``); they are
read with ``importlib.resources``, so a wheel, an editable install and a zip all find them.

A file of the same name in the working directory's folder (``./engines/NAME.yaml``) is found
first: a project can carry its own profiles and recipes without touching the package.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:  # Python 3.10 (JetPack 6)
    from importlib.abc import Traversable


@dataclass(frozen=True)
class ShippedFolder:
    """One folder of YAML files: ``folder`` in the working directory, then ``package`` installed."""

    folder: str
    package: str
    what: str

    def _shipped(self) -> Traversable | None:
        try:
            return resources.files(self.package)
        except ModuleNotFoundError:  # a checkout on PYTHONPATH, never installed
            return _checkout_folder(self.folder)

    def find(self, name: str) -> Path | Traversable | None:
        """The file for ``name`` (no suffix), or None when neither place has it."""
        local = Path(self.folder) / f"{name}.yaml"
        if local.is_file():
            return local
        shipped = self._shipped()
        if shipped is not None and (shipped / f"{name}.yaml").is_file():
            return shipped / f"{name}.yaml"
        return None

    def names(self) -> list[str]:
        """Every name :meth:`find` resolves, sorted."""
        found = {p.stem for p in Path(self.folder).glob("*.yaml")}
        shipped = self._shipped()
        if shipped is not None:
            found |= {p.name[: -len(".yaml")] for p in shipped.iterdir() if p.name.endswith(".yaml")}
        return sorted(found)


def _checkout_folder(folder: str) -> Traversable | None:
    """The folder beside the package in an uninstalled source checkout (never in a wheel)."""
    candidate = Path(__file__).resolve().parents[1] / folder
    return candidate if (candidate.parent / "pyproject.toml").is_file() and candidate.is_dir() else None


TARGETS = ShippedFolder("engines", "edgemoe.targets", "target profile")
CALIBRATION_RECIPES = ShippedFolder("calibration", "edgemoe.calibration_recipes", "calibration recipe")
