"""Files as Arrow batches: local paths or ``s3://`` objects, CSV, JSON lines or Parquet, with globs (no Airflow).

A path may hold ``*``, ``?`` and ``[...]`` in any part after the bucket; matching files are read in name order.
S3 goes through pyarrow's own S3 client, with credentials handed in by the hook (never from the config).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from asgard_provider.exceptions import SourceError

FILE_FORMATS = ("jsonl", "csv", "parquet")
_GLOB = ("*", "?", "[")


@dataclass(frozen=True, repr=False)
class S3Credentials:
    """Where and how to reach S3 (or an S3-compatible server); ``repr`` omits the keys."""

    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""
    region: str = ""
    endpoint_url: str = ""

    def __repr__(self) -> str:
        """Describe the endpoint without the keys."""
        return f"S3Credentials(endpoint={self.endpoint_url or 'aws'}, region={self.region or '-'})"

    def filesystem(self) -> Any:
        """Return a ``pyarrow.fs.S3FileSystem`` for these settings."""
        from pyarrow import fs

        kwargs: dict[str, Any] = {"region": self.region or "us-east-1"}
        if self.access_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key)
            if self.session_token:
                kwargs["session_token"] = self.session_token
        if self.endpoint_url:
            scheme, _, rest = self.endpoint_url.partition("://")
            kwargs.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
        return fs.S3FileSystem(**kwargs)


def is_remote(path: str) -> bool:
    """Whether ``path`` names S3 objects (``s3://bucket/key``)."""
    return path.startswith("s3://")


def _has_glob(text: str) -> bool:
    return any(mark in text for mark in _GLOB)


def list_files(filesystem: Any, path: str, shown: str | None = None) -> list[str]:
    """Return the files ``path`` names (a glob or one file) in name order; ``SourceError`` naming ``shown`` if none.

    ``shown`` is the path as configured: an error never echoes an expanded value.
    """
    shown = shown or path
    from pyarrow import fs

    if not _has_glob(path):
        info = filesystem.get_file_info(path)
        if info.type != fs.FileType.File:
            raise SourceError(f"source file {shown} does not exist")
        return [path]
    parts = path.split("/")
    first = next(i for i, part in enumerate(parts) if _has_glob(part))
    base = "/".join(parts[:first]) or "/"
    selector = fs.FileSelector(base, recursive=len(parts) - first > 1, allow_not_found=True)
    infos = filesystem.get_file_info(selector)
    found = sorted(i.path for i in infos if i.type == fs.FileType.File and fnmatch.fnmatchcase(i.path, path))
    if not found:
        raise SourceError(f"no file matches {shown}")
    return found


def read_files(filesystem: Any, paths: list[str], file_format: str, block_bytes: int) -> Iterator[pa.RecordBatch]:
    """Yield the batches of every file in turn; a file that does not parse names itself and the format."""
    if file_format not in FILE_FORMATS:
        raise SourceError(f"file format {file_format!r} is not one of {', '.join(FILE_FORMATS)}")
    for path in paths:
        try:
            yield from _read_one(filesystem, path, file_format, block_bytes)
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"cannot read {file_format} file {path}: {str(exc).splitlines()[0]}") from None


def _read_one(filesystem: Any, path: str, file_format: str, block_bytes: int) -> Iterator[pa.RecordBatch]:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        with filesystem.open_input_file(path) as handle:
            yield from pq.ParquetFile(handle).iter_batches()
        return
    with filesystem.open_input_stream(path) as stream:
        if file_format == "csv":
            import pyarrow.csv as pcsv

            yield from pcsv.open_csv(stream, read_options=pcsv.ReadOptions(block_size=block_bytes))
        else:
            import pyarrow.json as pjson

            yield from pjson.open_json(stream, read_options=pjson.ReadOptions(block_size=block_bytes))
