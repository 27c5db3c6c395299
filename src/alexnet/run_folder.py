"""A run folder is self-contained: the paths a run saves (in its config, in its checkpoints' callback states) are
absolute, so a folder that was copied or moved is re-rooted when resumed: every path under the folder the run was
saved in is read as the same path under the folder being resumed, and the copy writes into itself, never into
the original.
"""

from __future__ import annotations

import os
from typing import Any

RUN_RECORD = "config_resolved.yaml"


def continues_run(resume: str | None, ckpt_path: Any) -> bool:
    """``resume=<folder>`` and ``ckpt_path=last`` continue a run in its own folder; anything else starts one."""
    return bool(resume) or ckpt_path == "last"


def reroot(value: Any, old: str, new: str) -> Any:
    """``value`` (strings, and dicts and lists of them) with every path under ``old`` moved under ``new``."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old.rstrip(os.sep) + os.sep) else value
    if isinstance(value, dict):
        return {reroot(k, old, new): reroot(v, old, new) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(reroot(v, old, new) for v in value)
    return value


def reroot_checkpoint(checkpoint: dict[str, Any], run_config: dict | None) -> None:
    """Point a resumed checkpoint's callback states (best and last checkpoint paths) at the folder being resumed,
    when the run folder was copied or moved since the checkpoint was saved. Lightning would otherwise keep
    tracking the original folder's files, or (on a changed ``dirpath``) forget the best checkpoint's score."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("run_config") or {}
    old = (saved.get("paths") or {}).get("output_dir")
    new = ((run_config or {}).get("paths") or {}).get("output_dir")
    if (run_config or {}).get("resume") and old and new and old != new and "callbacks" in checkpoint:
        checkpoint["callbacks"] = reroot(checkpoint["callbacks"], old, new)
