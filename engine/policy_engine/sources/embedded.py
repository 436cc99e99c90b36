"""The embedded registry: JSON Schemas in a directory, ``<dir>/<schema>/<track>.json``."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from policy_engine.errors import InvalidSchemaError, RegistryUnavailableError, SchemaNotFoundError
from policy_engine.policy.model import SCHEMA_NAME_RE, TRACK_RE
from policy_engine.sources import SchemaDocument

#: A schema file larger than this is refused rather than parsed.
MAX_SCHEMA_FILE_BYTES = 16 * 1024 * 1024


def check_schema_name(schema: str, track: str) -> None:
    """Raise ``SchemaNotFoundError`` unless ``schema`` and ``track`` are safe to use in a path.

    Names come from payload envelopes, i.e. from producers: ``../../etc/passwd`` must never
    become a file path. Allowed: letters, digits, ``_``, ``.``, ``-``, not starting with ``.``.
    """
    if not SCHEMA_NAME_RE.match(schema) or ".." in schema or len(schema) > 255:
        raise SchemaNotFoundError(
            f"{schema[:80]!r} is not a valid schema name", schema=schema[:80], track=track
        )
    if not TRACK_RE.match(track) or ".." in track or len(track) > 64:
        raise SchemaNotFoundError(
            f"{track[:80]!r} is not a valid track name", schema=schema, track=track[:80]
        )


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO", "a socket", ...), ``None`` for a regular file."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
    )
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _read_regular_file(path: Path, schema: str, track: str) -> bytes:
    """Up to ``MAX_SCHEMA_FILE_BYTES + 1`` bytes of ``path``; refuses anything but a file.

    Opening a FIFO for reading blocks until a writer comes, and a device can stream forever:
    either would hang evaluation. The file is opened without blocking and checked with
    ``fstat`` on the open descriptor, so a file swapped for a FIFO in between is caught too.
    """
    kind = _file_kind(os.stat(path).st_mode)
    if kind is None:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(descriptor, "rb") as handle:
            kind = _file_kind(os.fstat(descriptor).st_mode)
            if kind is None:
                return handle.read(MAX_SCHEMA_FILE_BYTES + 1)
    raise InvalidSchemaError(
        f"{path} is {kind}, not a regular file: refused (a schema must be a .json file)",
        schema=schema,
        track=track,
    )


class DirectorySchemaSource:
    """Serves ``<root>/<schema>/<track>.json`` files; the version is the file's content hash."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.description = str(self.root)
        self._resolved_root = self.root.resolve()

    def _path(self, schema: str, track: str) -> Path:
        check_schema_name(schema, track)
        path = (self.root / schema / f"{track}.json").resolve()
        # Belt and braces: even a symlink inside the registry must not lead out of it.
        if not path.is_relative_to(self._resolved_root):
            raise SchemaNotFoundError(
                f"{schema}/{track} resolves outside the registry directory",
                schema=schema,
                track=track,
            )
        return path

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """Read and parse one schema file."""
        path = self._path(schema, track)
        try:
            data = _read_regular_file(path, schema, track)
        except FileNotFoundError:
            if not self.root.is_dir():
                raise RegistryUnavailableError(
                    f"registry directory {self.root} does not exist", schema=schema, track=track
                ) from None
            raise SchemaNotFoundError(
                f"no schema {schema} track {track} in {self.root}", schema=schema, track=track
            ) from None
        except OSError as exc:
            raise RegistryUnavailableError(
                f"cannot read {path}: {exc.strerror or exc}", schema=schema, track=track
            ) from exc
        if len(data) > MAX_SCHEMA_FILE_BYTES:
            raise InvalidSchemaError(
                f"{path} is larger than {MAX_SCHEMA_FILE_BYTES} bytes", schema=schema, track=track
            )
        try:
            document = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InvalidSchemaError(
                f"{path} is not valid JSON: {exc}", schema=schema, track=track
            ) from exc
        if not isinstance(document, dict | bool):
            raise InvalidSchemaError(
                f"{path} is not a JSON Schema (an object or a boolean)", schema=schema, track=track
            )
        version = hashlib.sha256(data).hexdigest()[:16]
        return SchemaDocument(schema=schema, track=track, version=version, document=document)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Schema directories and the tracks (``*.json`` files) inside them."""
        if not self.root.is_dir():
            raise RegistryUnavailableError(f"registry directory {self.root} does not exist")
        known: dict[str, tuple[str, ...]] = {}
        for child in sorted(self.root.iterdir()):
            if child.is_dir() and SCHEMA_NAME_RE.match(child.name):
                tracks = tuple(
                    sorted(
                        p.stem
                        for p in child.glob("*.json")
                        if TRACK_RE.match(p.stem) and p.is_file()  # no FIFOs, devices, dirs
                    )
                )
                if tracks:
                    known[child.name] = tracks
        return known

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    def __repr__(self) -> str:
        return f"DirectorySchemaSource({str(self.root)!r})"
