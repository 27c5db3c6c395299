"""The training set's per-pixel mean image (``data.normalization=paper``): computed once, cached next to the data.

The cache file records a fingerprint of the data it came from (file names, sizes and modification times for an
image folder; the bytes' hash for an IDX file). A cache whose fingerprint no longer matches is stale: it is
recomputed, and the log says so. When the data folder is read-only the file goes to ``$ALEXNET_CACHE_DIR``
(default ``$XDG_CACHE_HOME/alexnet``, i.e. ``~/.cache/alexnet``) under ``mean_images/``, named after the folder.

Written by hand: neither torchvision nor Lightning computes or caches dataset statistics.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from tqdm import tqdm

from alexnet.errors import UserError

log = logging.getLogger(__name__)
FORMAT = 1  # bump when what a cache file means changes, so older ones count as stale


def fallback_cache_dir() -> Path:
    """Where a mean image goes when the data folder cannot be written."""
    base = os.environ.get("ALEXNET_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "alexnet"
    return Path(base).expanduser() / "mean_images"


def files_fingerprint(root: Path, paths: Sequence[str], settings: str) -> str:
    """Hash of every file's path (relative to ``root``), size and modification time, plus ``settings``.

    Adding, removing, renaming, replacing or rewriting a file changes it; reading the files does not. The stat
    calls run in threads: on a network file system they wait on the server, not on Python.
    """
    with ThreadPoolExecutor(max_workers=16) as pool:
        stats = list(pool.map(os.stat, paths, chunksize=256))
    digest = hashlib.sha256(f"format {FORMAT}\n{settings}\n".encode())
    for path, stat in sorted(zip(paths, stats, strict=True)):
        digest.update(f"{os.path.relpath(path, root)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def bytes_fingerprint(path: Path, settings: str) -> str:
    """Hash of a file's bytes plus ``settings``."""
    digest = hashlib.sha256(f"format {FORMAT}\n{settings}\n".encode())
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def values_checksum(image: torch.Tensor) -> str:
    """SHA-256 of a float32 image's bytes: what a cache file's values must match."""
    return hashlib.sha256(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def mean_of_batches(batches: Iterable[torch.Tensor], total: int, description: str) -> torch.Tensor:
    """Per-pixel mean of uint8 (N, C, H, W) batches, summed exactly in float64, with a progress bar."""
    total_sum: torch.Tensor | None = None
    count = 0
    with tqdm(total=total, desc=description, unit="img", mininterval=1.0, dynamic_ncols=True) as progress:
        for batch in batches:
            batch_sum = batch.to(torch.float64).sum(0)
            total_sum = batch_sum if total_sum is None else total_sum + batch_sum
            count += len(batch)
            progress.update(len(batch))
    if total_sum is None or count == 0:
        raise UserError(f"{description}: no readable training images to average.")
    return (total_sum / count).to(torch.float32)


class MeanImageCache:
    """One mean image's cache file: ``<data_dir>/<name>``, or the fallback location when that is read-only.

    Args:
        data_dir: the folder of the data the mean describes (the cache goes next to it).
        name: file name; it should say which images were averaged (split, size).
        description: how the log and the progress bar name the computation.
    """

    def __init__(self, data_dir: Path, name: str, description: str) -> None:
        self.primary = Path(data_dir) / name
        folder_id = hashlib.sha256(str(Path(data_dir).absolute()).encode()).hexdigest()[:12]
        self.fallback = fallback_cache_dir() / f"{folder_id}-{name}"
        self.description = description

    def _existing(self) -> list[Path]:
        found = [path for path in (self.primary, self.fallback) if path.is_file()]
        return sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True)  # newest first

    @staticmethod
    def _read(path: Path) -> dict | None:
        """The cache file's content if it is whole: a finite float32 (C, H, W) image whose values match the checksum
        written with them (a file damaged on disk, or edited, is recomputed, never used)."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated or foreign file: recompute rather than fail
            log.warning("Ignoring the unreadable mean-image cache %s (%s).", path, error)
            return None
        image = saved.get("mean_image") if isinstance(saved, dict) else None
        whole = (
            isinstance(image, torch.Tensor)
            and image.dtype == torch.float32
            and image.dim() == 3
            and bool(torch.isfinite(image).all())
            and isinstance(saved.get("fingerprint"), str)
            # caches written before the checksum existed have none, and are used as before (no recompute of hours)
            and saved.get("checksum", values_checksum(image)) == values_checksum(image)
        )
        if not whole:
            log.warning("Ignoring the mean-image cache %s: its values do not match its checksum (damaged).", path)
        return saved if whole else None

    def load_trusted(self) -> torch.Tensor | None:
        """The newest cached image without checking its fingerprint: for processes that run after one that just
        checked it (Lightning's other ranks, after ``prepare_data`` on the first)."""
        for path in self._existing():
            saved = self._read(path)
            if saved is not None:
                return saved["mean_image"]
        return None

    def get(self, fingerprint: Callable[[], str], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The cached image if its fingerprint matches the data now, else computed, saved and returned."""
        current = fingerprint()
        stale = []
        for path in self._existing():
            saved = self._read(path)
            if saved is not None and saved["fingerprint"] == current:
                log.info("%s: using the cached mean image %s", self.description, path)
                return saved["mean_image"]
            stale.append(path)
        if stale:
            log.warning(
                "%s: the cached mean image %s was computed from different data (files added, removed or changed "
                "since); recomputing it.",
                self.description,
                stale[0],
            )
        else:
            log.info("%s: computing the training set's mean image once; it is cached for later runs.", self.description)
        image = compute()
        self._save({"mean_image": image, "fingerprint": current, "format": FORMAT, "checksum": values_checksum(image)})
        return image

    def _save(self, content: dict) -> None:
        try:
            path = _write_atomically(self.primary, content)
        except OSError as error:
            log.warning(
                "%s: cannot write next to the data (%s: %s); caching the mean image in %s instead "
                "(ALEXNET_CACHE_DIR moves it).",
                self.description,
                self.primary.parent,
                error.strerror or error,
                self.fallback.parent,
            )
            try:
                path = _write_atomically(self.fallback, content)
            except OSError as second:
                raise UserError(
                    f"Cannot cache the mean image in {self.primary.parent} nor in {self.fallback.parent} "
                    f"({second.strerror or second}); point ALEXNET_CACHE_DIR at a writable folder."
                ) from second
            if self.primary.is_file():  # a stale file we cannot replace would shadow the fresh one
                log.warning("The stale %s cannot be removed; the newer %s is used instead.", self.primary, path)
        log.info("%s: mean image cached in %s", self.description, path)


def _write_atomically(path: Path, content: dict) -> Path:
    """Write to a temporary file in the same folder and rename it, so readers never see half a file (and
    several processes writing at once leave one whole file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(content, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
