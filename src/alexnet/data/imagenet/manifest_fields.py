"""The fields of a prepared set's ``manifest.json`` that training reads, checked before any is used: the file
comes from wherever the set was copied from, so it is untrusted data (a hand edit or a truncated copy would
otherwise surface as a KeyError or a wrong shape deep inside a loader worker)."""

from __future__ import annotations

import json
from typing import Any

from alexnet.errors import UserError

FORMATS = ("jpeg", "raw")


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest, or None."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    classes = manifest.get("classes")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) and c for c in classes)):
        return "classes is not a list of class names"
    if len(set(classes)) != len(classes):
        return "classes names a class twice"
    if manifest.get("format") not in FORMATS:
        return f"format={manifest.get('format')!r} is none of {', '.join(FORMATS)}"
    size = manifest.get("resize_size")
    if not (is_count(size) and size > 0):
        return f"resize_size={size!r} is not a positive whole number"
    quality = manifest.get("jpeg_quality")
    if manifest["format"] == "jpeg" and not (is_count(quality) and 1 <= quality <= 100):
        return f"jpeg_quality={quality!r} is not a JPEG quality from 1 to 100"
    if not is_count(manifest.get("write_order_seed")):
        return "write_order_seed is not a whole number"
    splits = manifest.get("splits")
    if not (isinstance(splits, dict) and splits):
        return "splits lists no split"
    for name, record in splits.items():
        if problem := split_problem(record, classes):
            return f"splits.{name}.{problem}"
    return None


def split_problem(record: Any, classes: list[str]) -> str | None:
    """What is wrong with one split's summary (in the manifest, or alexnet-prepare's ``<split>.json``), or None."""
    if not isinstance(record, dict) or not is_count(record.get("images")):
        return "images is not a count"
    per_class = record.get("per_class")
    if not (isinstance(per_class, list) and len(per_class) == len(classes) and all(map(is_count, per_class))):
        return "per_class is not one count per class"
    if sum(per_class) != record["images"]:
        return f"per_class sums to {sum(per_class)}, not its {record['images']} images"
    return None


def parse_manifest(text: str, where: str) -> dict[str, Any]:
    """The manifest read from ``where``, or one message saying which field is wrong and how to rewrite it."""
    try:
        manifest = json.loads(text)
    except ValueError as error:
        problem: str | None = f"it is not JSON ({error})"
    else:
        problem = _problem(manifest)
    if problem:
        raise UserError(
            f"{where} is damaged or not alexnet-prepare's: {problem}. Write the set again with alexnet-prepare "
            "(overwrite=true replaces it)."
        )
    return manifest
