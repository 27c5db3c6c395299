"""Small files (a manifest, a report) in a local folder or an object store (``s3://``, ``gs://``, ``r2://``).

The chunks themselves are written and read by litdata; these helpers use litdata's own storage clients (boto3 for
S3, so ``AWS_ENDPOINT_URL``, ``AWS_PROFILE`` and the other AWS settings apply), so a bucket reachable for one is
reachable for the other.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from alexnet.errors import UserError

if TYPE_CHECKING:
    from litdata.streaming.fs_provider import FsProvider

REMOTE_SCHEMES = ("s3", "gs", "r2")


def is_remote(location: str) -> bool:
    return urlparse(str(location)).scheme in REMOTE_SCHEMES


def check_location(location: str, setting: str) -> str:
    """A local path (made absolute) or a supported bucket URL; anything else with a scheme is refused."""
    scheme = urlparse(str(location)).scheme
    if is_remote(location):
        if not urlparse(location).netloc:
            raise UserError(f"{setting}={location}: name the bucket, e.g. s3://my-bucket/imagenet_prepared.")
        return str(location).rstrip("/")
    if scheme and len(scheme) > 1:  # "C:" on Windows is a drive, not a scheme
        raise UserError(f"{setting}={location}: use a local folder or one of {', '.join(REMOTE_SCHEMES)}:// URLs.")
    return str(Path(location).expanduser().absolute())


def join(location: str, *parts: str) -> str:
    if is_remote(location):
        return "/".join([location.rstrip("/"), *parts])
    return str(Path(location, *parts))


def _provider(location: str) -> FsProvider:
    parsed = urlparse(location)
    return _bucket_provider(f"{parsed.scheme}://{parsed.netloc}")


@functools.cache
def _bucket_provider(bucket: str) -> FsProvider:
    """One client per bucket and process: creating a boto3 client takes a good part of a second."""
    from litdata.streaming.fs_provider import _get_fs_provider

    return _get_fs_provider(bucket, {})


def _unreachable(location: str, error: Exception) -> UserError:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    return UserError(
        f"Cannot reach {location} ({type(error).__name__}: {first_line}). Check the bucket name and your "
        "credentials (for S3: AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL for an "
        "S3-compatible server)."
    )


def read_text(location: str) -> str | None:
    """The file's text, or None when there is no such file."""
    if not is_remote(location):
        path = Path(location)
        return path.read_text() if path.is_file() else None
    try:
        provider = _provider(location)
        if not provider.exists(location):
            return None
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, "file")
            provider.download_file(location, local)
            return Path(local).read_text()
    except UserError:
        raise
    except Exception as error:  # botocore/google errors: credentials, network, no such bucket
        raise _unreachable(location, error) from error


def write_text(location: str, text: str) -> None:
    """Write the whole file at once: a reader sees the old file, the new one, or none, never half of one."""
    if not is_remote(location):
        path = Path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text)
        os.replace(partial, path)  # atomic on POSIX
        return
    with tempfile.TemporaryDirectory() as folder:  # one PUT: object stores replace an object atomically
        local = os.path.join(folder, "file")
        Path(local).write_text(text)
        try:
            _provider(location).upload_file(local, location)
        except Exception as error:
            raise _unreachable(location, error) from error


def has_files(location: str) -> bool:
    """Whether a folder (a prefix in a bucket) holds anything."""
    if not is_remote(location):
        path = Path(location)
        return path.is_dir() and any(path.iterdir())
    try:
        return not _provider(location).is_empty(location)
    except Exception as error:
        raise _unreachable(location, error) from error


def remove(location: str) -> None:
    """Delete a file or a whole folder (every object under the prefix ``location/``); absent is fine."""
    if not is_remote(location):
        path = Path(location)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        return
    try:
        provider = _provider(location)
        provider.delete_file_or_directory(location.rstrip("/") + "/")
        if provider.exists(location):
            provider.delete_file_or_directory(location)
    except Exception as error:
        raise _unreachable(location, error) from error
