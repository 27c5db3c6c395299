"""Where the Hydra config tree lives: ``conf/`` at the repository root, or inside an installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]
_PACKAGED = _PACKAGE / "conf"  # a wheel carries the tree inside the package (pyproject's force-include)
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else _PACKAGE.parents[1] / "conf"
