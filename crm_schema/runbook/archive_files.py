"""The files an archived activity-log month leaves as: rows and manifest, and their checks.

A month ``YYYY_MM`` becomes ``user_activity_log_YYYY_MM.csv.gz`` (``COPY ... TO STDOUT`` CSV
with a header, gzip) and ``user_activity_log_YYYY_MM.json``, the manifest. The manifest is
written last, only once the data file has been read back and found complete: a manifest on
disk means a verified export.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORMAT = "crm-schema activity-log month, v1"
CHUNK = 1 << 20


class ArchiveFileError(Exception):
    """An archive file that is missing, damaged or does not match its manifest."""


@dataclass(frozen=True)
class Manifest:
    partition: str
    month: str  # YYYY-MM (UTC)
    range_from: str
    range_to: str
    row_count: int
    first_created_at: str | None
    last_created_at: str | None
    columns: list[str]
    file: str  # the data file's name, beside the manifest
    sha256: str
    package_version: str
    revision: str
    exported_at: str
    format: str = FORMAT

    def write(self, path: Path) -> None:
        _atomic_write(path, (json.dumps(asdict(self), indent=2) + "\n").encode())

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            manifest = cls(**data)
        except FileNotFoundError as exc:
            raise ArchiveFileError(f"no manifest {path}") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise ArchiveFileError(f"{path} is not a crm-schema archive manifest: {exc}") from exc
        if manifest.format != FORMAT:
            raise ArchiveFileError(f"{path}: unknown archive format {manifest.format!r}")
        # The names it carries are used to find files and partitions: they must be the ones an
        # export writes (no path or SQL smuggled in through an edited manifest).
        expected = f"user_activity_log_{manifest.month.replace('-', '_')}"
        if not (
            re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", manifest.month)
            and manifest.partition == expected
            and manifest.file == f"{expected}.csv.gz"
        ):
            raise ArchiveFileError(f"{path}: month, partition and file do not agree")
        return manifest


def data_path(directory: Path, partition: str) -> Path:
    return directory / f"{partition}.csv.gz"


def manifest_path(directory: Path, partition: str) -> Path:
    return directory / f"{partition}.json"


def manifest_for(path: Path) -> Path:
    """The manifest of ``path``, given either the manifest or the data file."""
    name = path.name.removesuffix(".csv.gz").removesuffix(".json")
    return path.with_name(f"{name}.json")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_back(path: Path) -> tuple[list[str], int]:
    """The header and the number of rows, read by a CSV parser (a value may span lines)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise ArchiveFileError(f"{path} is empty: no CSV header")
        return header, sum(1 for _ in reader)


def verify(manifest: Manifest, directory: Path) -> Path:
    """Check the data file against its manifest: checksum, header, row count."""
    path = directory / manifest.file
    if not path.is_file():
        raise ArchiveFileError(f"{path} is missing")
    if (actual := sha256_of(path)) != manifest.sha256:
        raise ArchiveFileError(f"{path}: sha256 {actual} does not match the manifest")
    try:
        header, rows = read_back(path)
    except (OSError, EOFError, csv.Error, UnicodeDecodeError) as exc:
        raise ArchiveFileError(f"{path} cannot be read back: {exc}") from exc
    if header != manifest.columns:
        raise ArchiveFileError(f"{path}: header {header} is not the manifest's columns")
    if rows != manifest.row_count:
        raise ArchiveFileError(f"{path} holds {rows} rows, the manifest says {manifest.row_count}")
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class GzipWriter:
    """A temporary gzip file that becomes ``path`` only on :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temporary = path.with_name(path.name + ".tmp")
        # mtime=0: the same rows give the same bytes, so the same checksum.
        self._raw = self.temporary.open("wb")
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6, mtime=0)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._gzip.write(data)

    def commit(self) -> None:
        self._gzip.close()
        self._raw.close()
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        self._gzip.close()
        self._raw.close()
        self.temporary.unlink(missing_ok=True)


def quoted(columns: list[str]) -> str:
    """Column names as a SQL list, each a quoted identifier."""
    return ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
