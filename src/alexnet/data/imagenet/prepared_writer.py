"""``alexnet-prepare``'s work: ImageNet's central 256x256 patches, decoded once and written as litdata chunks.

The paper down-sampled every image to 256x256 once and cropped from that; doing it once instead of every epoch
takes the full-size JPEG decode out of training. The output (a folder or a bucket URL) holds

    <output>/train/, <output>/val/   litdata chunks + index.json; each sample is {image, label, wnid, file}
    <output>/<split>.json            written when that split is complete
    <output>/skipped.txt             the files that could not be decoded, with the reason
    <output>/manifest.json           written last: classes, counts, settings, skipped files, source fingerprint

A set without ``manifest.json`` is unfinished: running the same command again keeps the splits that were
completed (their ``<split>.json`` matches) and writes the others again from scratch, so no half-written split
is ever read as a finished one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.io import encode_jpeg

from alexnet.config.rules import check_values
from alexnet.data.image_files import UNREADABLE, class_folder_samples, read_patch
from alexnet.data.imagenet.image_folder import LAYOUT
from alexnet.data.imagenet.manifest_fields import is_count, parse_manifest, split_problem
from alexnet.data.storage import check_location, has_files, is_remote, join, read_text, remove, write_text
from alexnet.errors import UserError

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
MANIFEST = "manifest.json"
SKIPPED_REPORT = "skipped.txt"
MANIFEST_VERSION = 1
# The training split is written in a fixed random order, so every chunk mixes all classes: litdata shuffles
# the order of chunks and of the samples inside each chunk, which cannot mix a class-sorted set well.
WRITE_ORDER_SEED = 0
RESIZE_RULE = "decoded as RGB, shorter side rescaled to resize_size (antialiased bilinear), central square"


@dataclass(frozen=True)
class PatchSettings:
    """How the patches are written; a finished output is reused only when these match."""

    format: str = "jpeg"
    jpeg_quality: int | None = 90
    resize_size: int = 256

    def __post_init__(self) -> None:
        quality = {"jpeg_quality": self.jpeg_quality} if self.format == "jpeg" else {}
        check_values({"format": self.format, "resize_size": self.resize_size, **quality})
        if self.format == "raw":
            object.__setattr__(self, "jpeg_quality", None)


@dataclass
class SplitListing:
    """One split of the source ImageFolder: its images (absolute path, path relative to the source, label)."""

    split: str
    classes: list[str]
    samples: list[tuple[str, str, int]]
    fingerprint: str  # sha256 of the sorted "relative path <tab> size <tab> mtime_ns" lines
    former_fingerprint: str = ""  # the same without mtimes, as sets written before recorded it

    @property
    def fingerprints(self) -> tuple[str, str]:
        return self.fingerprint, self.former_fingerprint


# A replaced file of the same size shows in its modification time (cp, mv and editors set it). Hashing every
# source byte would tell more, but means reading ImageNet's 140 GB again before each check.
FINGERPRINT_RULE = "path, size, mtime_ns"
SPLIT_SUMMARY = ("images", "per_class", "bytes", "source_files", "source_fingerprint", "fingerprint_rule")


def list_split(source: Path, split: str) -> SplitListing:
    """The split's class folders and images, listed as ``data=imagenet`` lists them (each real file once, under
    the class folder it is really in)."""
    folder = source / split
    if not folder.is_dir():
        raise UserError(f"alexnet-prepare: no {split}/ folder under source={source}.\n{LAYOUT}")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    found, _ = class_folder_samples(folder, {c: i for i, c in enumerate(classes)})
    counts = Counter(label for _, label in found)
    empty = [c for i, c in enumerate(classes) if counts[i] == 0]
    if not classes or empty:
        where = f"class folders without images: {', '.join(empty[:5])}" if classes else "no class folders"
        raise UserError(f"alexnet-prepare: {folder} has {where}.\n{LAYOUT}")
    samples = [(path, os.path.relpath(path, source), label) for path, label in found]
    digest, former = hashlib.sha256(), hashlib.sha256()
    for path, relative, _ in sorted(samples, key=lambda s: s[1]):
        stat = os.stat(path)
        digest.update(f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        former.update(f"{relative}\t{stat.st_size}\n".encode())
    return SplitListing(split, classes, samples, digest.hexdigest(), former.hexdigest())


class PatchWriter:
    """litdata's ``fn``: one source image -> one sample, or none (the file is named in the report) if unreadable.

    A generator, so that an unreadable file yields no sample at all rather than a placeholder.
    """

    def __init__(self, settings: PatchSettings, classes: list[str], report_dir: str) -> None:
        self.settings, self.classes, self.report_dir = settings, classes, report_dir

    def __call__(self, item: tuple[str, str, int]) -> Iterator[dict[str, Any]]:
        # One image at a time per process, as in DataLoader workers; it also keeps a forked worker away from an
        # OpenMP pool its parent used (libgomp's pool does not survive fork and would hang the resize).
        torch.set_num_threads(1)
        path, relative, label = item
        try:
            patch = read_patch(path, self.settings.resize_size)
        except UNREADABLE as error:
            log.warning("Skipping unreadable image %s (%s)", path, error)
            record = {"file": relative, "reason": f"{type(error).__name__}: {error}"}
            with open(os.path.join(self.report_dir, f"skipped-{os.getpid()}.jsonl"), "a") as report:
                report.write(json.dumps(record) + "\n")
            return
        if self.settings.format == "jpeg":
            image: bytes | torch.Tensor = encode_jpeg(patch, quality=self.settings.jpeg_quality).numpy().tobytes()
        else:
            image = patch
        yield {"image": image, "label": label, "wnid": self.classes[label], "file": relative}


def written_count(split_location: str) -> tuple[int, int]:
    """Samples and bytes litdata's index says a written split holds."""
    index = json.loads(read_text(join(split_location, "index.json")) or '{"chunks": []}')
    chunks = index["chunks"]
    return sum(c["chunk_size"] for c in chunks), sum(c["chunk_bytes"] for c in chunks)


def write_split(
    listing: SplitListing,
    settings: PatchSettings,
    location: str,
    num_workers: int,
    chunk_bytes: str,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Write one split with ``litdata.optimize`` (every worker a process, with a progress bar); its record."""
    from litdata import optimize

    samples = list(listing.samples)
    if listing.split == "train":
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(WRITE_ORDER_SEED))
        samples = [samples[i] for i in order.tolist()]
    with tempfile.TemporaryDirectory(prefix="alexnet-prepare-") as report_dir:
        optimize(
            fn=PatchWriter(settings, listing.classes, report_dir),
            inputs=samples,
            output_dir=location,
            chunk_bytes=None if chunk_size else chunk_bytes,
            chunk_size=chunk_size,  # items per chunk instead of bytes (the benchmark's ImageNet-sized chunks)
            num_workers=min(num_workers, len(samples)),
            keep_data_ordered=True,  # each worker writes a fixed slice in order: the same output every time
            reorder_files=False,
            mode="overwrite" if is_remote(location) else None,  # a remote prefix is cleared first
            # fork starts workers in milliseconds; spawn re-imports torch in each (seconds) and is the only
            # choice where fork is unsafe (macOS)
            start_method="fork" if sys.platform.startswith("linux") else None,
        )
        skipped = []
        for report in sorted(Path(report_dir).glob("skipped-*.jsonl")):
            skipped += [json.loads(line) for line in report.read_text().splitlines()]
    skipped.sort(key=lambda s: s["file"])
    images, size = written_count(location)
    if images != len(samples) - len(skipped):
        raise RuntimeError(
            f"litdata wrote {images} samples to {location}, expected {len(samples)} - {len(skipped)} skipped"
        )
    skipped_files = {s["file"] for s in skipped}
    per_class = Counter(label for _, relative, label in samples if relative not in skipped_files)
    return {
        "images": images,
        "per_class": [per_class.get(i, 0) for i in range(len(listing.classes))],
        "bytes": size,
        "source_files": len(samples),
        "source_fingerprint": listing.fingerprint,
        "fingerprint_rule": FINGERPRINT_RULE,
        "skipped": skipped,
    }


def expected_settings(settings: PatchSettings, classes: list[str]) -> dict[str, Any]:
    return {
        "format_version": MANIFEST_VERSION,
        **asdict(settings),
        "write_order_seed": WRITE_ORDER_SEED,
        "classes": classes,
    }


def settings_differ(record: dict[str, Any], wanted: dict[str, Any], fingerprints: tuple[str, str]) -> list[str]:
    """The settings (and the source listing: ``fingerprints`` = this rule's, the former rule's) in which a written
    record differs from this run. A record without ``fingerprint_rule`` was written before mtimes counted."""
    differ = [key for key, value in wanted.items() if record.get(key) != value]
    current = record.get("fingerprint_rule") == FINGERPRINT_RULE
    if record.get("source_fingerprint") != fingerprints[0 if current else 1]:
        differ.append("source files (names, sizes or modification times)")
    return differ


def read_split_record(text: str | None, where: str) -> dict[str, Any] | None:
    """A finished split's ``<split>.json``, or None when there is none or it cannot be one: that split is then
    written again (the record only spares a resumed run the work; the chunks it stands for are rewritten too)."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    classes = record.get("classes") if isinstance(record, dict) else None  # a changed class list: settings_differ
    fine = (
        isinstance(classes, list)
        and split_problem(record, classes) is None
        and all(is_count(record.get(k)) for k in ("bytes", "source_files"))
        and isinstance(record.get("source_fingerprint"), str)
        and isinstance(record.get("skipped"), list)
        and all(isinstance(s, dict) and {"file", "reason"} <= s.keys() for s in record["skipped"])
    )
    if not fine:
        log.warning("%s cannot be read as a finished split's record: writing that split again.", where)
        return None
    return record


def read_manifest(root: str) -> dict[str, Any] | None:
    """The finished set's manifest, its fields checked; None when there is none."""
    text = read_text(join(root, MANIFEST))
    return None if text is None else parse_manifest(text, join(root, MANIFEST))


def check_output_folder(output: str, source: Path) -> None:
    """Refuse to write into the source, or into a local folder holding files that are not a prepared set's."""
    if is_remote(output):
        return
    path = Path(output)
    if path == source or source in path.parents or path in source.parents:
        raise UserError(f"output={path} overlaps source={source}; write the prepared set to a folder of its own.")
    if not path.is_dir():
        return
    ours = {MANIFEST, SKIPPED_REPORT, f".{MANIFEST}.partial", *SPLITS, *(f"{s}.json" for s in SPLITS)}
    ours |= {f".{s}.json.partial" for s in SPLITS}
    mean_image = ("mean_image_", ".mean_image_")  # data.normalization=paper's cache, written by the data module
    foreign = sorted(p.name for p in path.iterdir() if p.name not in ours and not p.name.startswith(mean_image))
    if foreign:
        raise UserError(
            f"output={path} holds files alexnet-prepare did not write ({', '.join(foreign[:5])}); give an empty or "
            "new folder."
        )


def prepare(
    source: str,
    output: str,
    settings: PatchSettings,
    splits: list[str] | tuple[str, ...] = SPLITS,
    num_workers: int | None = None,
    chunk_bytes: str = "64MB",
    overwrite: bool = False,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Write the prepared set (or find it already written); returns its manifest."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise UserError(f"splits={list(splits)}: choose from {', '.join(SPLITS)}.")
    source_root = Path(source).expanduser().absolute()
    if not source_root.is_dir():
        raise UserError(f"source={source_root}: no such folder. Point it at the ImageFolder copy.\n{LAYOUT}")
    output = check_location(output, "output")
    check_output_folder(output, source_root)
    workers = num_workers or os.cpu_count() or 1

    listings = {s: list_split(source_root, s) for s in splits}
    classes = listings[splits[0]].classes
    for split, listing in listings.items():
        if listing.classes != classes:
            raise UserError(f"The class folders of {source_root / split} differ from those of {splits[0]}/.\n{LAYOUT}")
    wanted = expected_settings(settings, classes)
    fingerprint = hashlib.sha256("".join(listings[s].fingerprint for s in splits).encode()).hexdigest()
    former = hashlib.sha256("".join(listings[s].former_fingerprint for s in splits).encode()).hexdigest()

    finished = read_manifest(output)
    if finished is not None:
        differ = settings_differ(finished, wanted, (fingerprint, former))
        if sorted(finished.get("splits", {})) != sorted(splits):
            differ.append("splits")
        if not differ:
            counts = ", ".join(f"{finished['splits'][s]['images']:,} {s}" for s in splits)
            log.info("%s is already prepared (%s images); nothing to do.", output, counts)
            return finished
        if not overwrite:
            raise UserError(
                f"output={output} holds a finished set prepared differently ({', '.join(differ)}). Give another "
                "output folder, or overwrite=true to replace it."
            )
        log.info("Replacing the set in %s (it differs in %s).", output, ", ".join(differ))
        remove(join(output, MANIFEST))
        for split in SPLITS:
            remove(join(output, f"{split}.json"))

    records: dict[str, dict[str, Any]] = {}
    for split in splits:
        where = join(output, f"{split}.json")
        record = read_split_record(read_text(where), where)
        if record is not None and not settings_differ(record, wanted, listings[split].fingerprints):
            log.info("%s/ was completed by an earlier run: kept (%s images).", split, f"{record['images']:,}")
            records[split] = record
            continue
        if record is not None or has_files(join(output, split)):
            log.info("%s/ is from an unfinished or different run: writing it again from scratch.", split)
        remove(join(output, f"{split}.json"))
        remove(join(output, split))
        log.info(
            "Writing %s/: %s images from %s as %s patches of %d px, %d workers",
            split,
            f"{len(listings[split].samples):,}",
            source_root / split,
            settings.format if settings.format == "raw" else f"JPEG q{settings.jpeg_quality}",
            settings.resize_size,
            workers,
        )
        record = {
            **wanted,
            **write_split(listings[split], settings, join(output, split), workers, chunk_bytes, chunk_size),
        }
        write_text(join(output, f"{split}.json"), json.dumps(record, indent=1))
        records[split] = record

    skipped = [s for split in splits for s in records[split]["skipped"]]
    report = "".join(f"{s['file']}\t{s['reason']}\n" for s in skipped)
    write_text(join(output, SKIPPED_REPORT), report)
    manifest = {
        **wanted,
        "created_by": "alexnet-prepare",
        "source": str(source_root),
        "source_fingerprint": fingerprint,
        "fingerprint_rule": FINGERPRINT_RULE,
        "resize": RESIZE_RULE,
        "splits": {s: {k: records[s][k] for k in SPLIT_SUMMARY} for s in splits},
        "skipped": skipped,
    }
    write_text(join(output, MANIFEST), json.dumps(manifest, indent=1))  # last: the set is complete
    for split in splits:
        log.info("%s/: %s images, %.1f MB", split, f"{records[split]['images']:,}", records[split]["bytes"] / 1e6)
    if skipped:
        log.warning("%d unreadable files skipped; listed in %s", len(skipped), join(output, SKIPPED_REPORT))
    log.info("Prepared %s. Train with: alexnet-train data=imagenet_prepared data.root=%s", output, output)
    return manifest
