"""Where the Hydra config tree lives: ``conf/`` at the repository root, or inside an installed wheel."""

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parents[2] / "conf"
