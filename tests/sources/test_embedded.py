"""The embedded registry: ``<dir>/<schema>/<track>.json`` files (SPEC §7), and its safety."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from policy_engine.errors import InvalidSchemaError, RegistryUnavailableError, SchemaNotFoundError
from policy_engine.sources import SchemaSource
from policy_engine.sources.embedded import DirectorySchemaSource

FEEDBACK = {"type": "object", "required": ["producer_id"]}


def _put(root: Path, schema: str, track: str, document: Any) -> Path:
    path = root / schema / f"{track}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A registry directory with two schemas, beside a directory that must stay unread."""
    root = tmp_path / "registry"
    _put(root, "telemetry.FeedbackEvent", "v1", FEEDBACK)
    _put(root, "telemetry.FeedbackEvent", "v2", {"type": "object"})
    _put(root, "marketdata.Quote", "v1", {"type": "object", "required": ["symbol"]})
    return root


def test_directory_source_is_a_schema_source(registry: Path):
    """``DirectorySchemaSource`` satisfies the ``SchemaSource`` protocol."""
    assert isinstance(DirectorySchemaSource(registry), SchemaSource)


def test_fetch_returns_the_document(registry: Path):
    """Fetching a schema/track returns its parsed JSON with the name and track."""
    doc = DirectorySchemaSource(registry).fetch("telemetry.FeedbackEvent", "v1")
    assert (doc.schema, doc.track, doc.document) == ("telemetry.FeedbackEvent", "v1", FEEDBACK)
    assert dict(doc.references) == {}


def test_version_is_a_content_hash(registry: Path):
    """The version is derived from the file's bytes: stable, and new when the content changes."""
    source = DirectorySchemaSource(registry)
    path = registry / "telemetry.FeedbackEvent" / "v1.json"
    first = source.fetch("telemetry.FeedbackEvent", "v1").version
    assert source.fetch("telemetry.FeedbackEvent", "v1").version == first
    assert first in hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(json.dumps({**FEEDBACK, "title": "changed"}), encoding="utf-8")
    assert source.fetch("telemetry.FeedbackEvent", "v1").version != first


def test_same_content_in_two_tracks_has_the_same_version(registry: Path):
    """Two files with identical bytes share a version: it is a content hash, not a path."""
    _put(registry, "telemetry.Copy", "v1", FEEDBACK)
    source = DirectorySchemaSource(registry)
    assert (
        source.fetch("telemetry.Copy", "v1").version
        == source.fetch("telemetry.FeedbackEvent", "v1").version
    )


@pytest.mark.parametrize(
    ("schema", "track"),
    [("telemetry.Missing", "v1"), ("telemetry.FeedbackEvent", "v3"), ("marketdata.Quote", "v2")],
)
def test_missing_schema_or_track_is_not_found(registry: Path, schema: str, track: str):
    """A schema or track without a file is ``SchemaNotFoundError`` (a definite no)."""
    with pytest.raises(SchemaNotFoundError) as info:
        DirectorySchemaSource(registry).fetch(schema, track)
    assert (info.value.schema, info.value.track) == (schema, track)


def test_schema_directory_without_tracks_is_not_found(registry: Path):
    """An empty schema directory has no tracks: fetching one is ``SchemaNotFoundError``."""
    (registry / "telemetry.Empty").mkdir()
    with pytest.raises(SchemaNotFoundError):
        DirectorySchemaSource(registry).fetch("telemetry.Empty", "v1")


# --------------------------------------------------------------------------- escaping the root


@pytest.fixture
def sentinels(tmp_path: Path) -> list[Path]:
    """Valid schema files outside the registry, where an escaping name would land."""
    planted = [
        _put(tmp_path, "x", "v1", {"title": "SENTINEL"}),
        _put(tmp_path, "b", "v1", {"title": "SENTINEL"}),
        _put(tmp_path / "registry", "..", "v1", {"title": "SENTINEL"}),
        _put(tmp_path, "outside", "passwd", {"title": "SENTINEL"}),
    ]
    return [p.resolve() for p in planted]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path opened through ``open``/``Path.open``/``io.open``/``os.open`` during the test."""
    seen: list[Path] = []
    real_open = builtins.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike):
            seen.append(Path(os.fsdecode(file)).resolve())
        return real_open(file, *args, **kwargs)

    real_os_open = os.open

    def os_spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(Path(os.fsdecode(file)).resolve())
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    monkeypatch.setattr(os, "open", os_spy)
    return seen


ESCAPES = [
    ("../x", "v1"),
    ("a/../../b", "v1"),
    ("/etc/passwd", "v1"),
    ("..", "v1"),
    ("../outside", "passwd"),
    ("telemetry.FeedbackEvent", "../../x/v1"),
    ("telemetry.FeedbackEvent", ".."),
    ("telemetry.FeedbackEvent", "/etc/passwd"),
    ("x\x00", "v1"),
    ("telemetry.FeedbackEvent\x00../../x", "v1"),
    ("telemetry.FeedbackEvent", "v1\x00"),
    ("..\\x", "v1"),
    ("a\\..\\..\\b", "v1"),
    ("telemetry.FeedbackEvent", "..\\..\\x\\v1"),
    ("", "v1"),
    ("telemetry.FeedbackEvent", ""),
    (".hidden", "v1"),
    ("telemetry.FeedbackEvent/../marketdata.Quote", "v1"),
    ("a" * 300, "v1"),
]


@pytest.mark.parametrize(("schema", "track"), ESCAPES, ids=[repr(s + "|" + t) for s, t in ESCAPES])
def test_names_that_would_escape_the_root_are_not_found(
    registry: Path,
    sentinels: list[Path],
    opened: list[Path],
    schema: str,
    track: str,
):
    """A schema or track name that is not a plain name is not found, and nothing is read."""
    with pytest.raises(SchemaNotFoundError):
        DirectorySchemaSource(registry).fetch(schema, track)
    root = registry.resolve()
    assert [p for p in opened if not p.is_relative_to(root)] == []
    assert not set(opened) & set(sentinels)


def test_open_spy_sees_a_legitimate_read(registry: Path, opened: list[Path]):
    """The spy used above does record reads, so its silence in the escape tests means something."""
    DirectorySchemaSource(registry).fetch("telemetry.FeedbackEvent", "v1")
    assert (registry / "telemetry.FeedbackEvent" / "v1.json").resolve() in opened


def test_symlinked_file_pointing_outside_is_refused(tmp_path: Path, registry: Path):
    """A track file that is a symlink to a file outside the registry is not served."""
    secret = _put(tmp_path / "outside", "secret", "v1", {"title": "SENTINEL"})
    (registry / "evil").mkdir()
    (registry / "evil" / "v1.json").symlink_to(secret)
    with pytest.raises(SchemaNotFoundError):
        DirectorySchemaSource(registry).fetch("evil", "v1")


def test_symlinked_directory_pointing_outside_is_refused(tmp_path: Path, registry: Path):
    """A schema directory that is a symlink to a directory outside the registry is not served."""
    secret = _put(tmp_path / "outside", "secret", "v1", {"title": "SENTINEL"})
    (registry / "evil").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(SchemaNotFoundError):
        DirectorySchemaSource(registry).fetch("evil", "v1")


def test_symlink_inside_the_registry_is_served(registry: Path):
    """A symlink that stays inside the registry (v3 -> v2) is served like a file."""
    (registry / "telemetry.FeedbackEvent" / "v3.json").symlink_to("v2.json")
    doc = DirectorySchemaSource(registry).fetch("telemetry.FeedbackEvent", "v3")
    assert doc.document == {"type": "object"}


def test_registry_root_reached_through_a_symlink_works(tmp_path: Path, registry: Path):
    """A registry whose root path is itself a symlink (a mounted volume) serves its files."""
    (tmp_path / "link").symlink_to(registry, target_is_directory=True)
    doc = DirectorySchemaSource(tmp_path / "link").fetch("marketdata.Quote", "v1")
    assert doc.document["required"] == ["symbol"]


# --------------------------------------------------------------------------- bad files, no root


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b'{"a": 1', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000],
    ids=["garbage", "empty", "truncated", "not utf-8", "too deep"],
)
def test_invalid_json_is_an_invalid_schema(registry: Path, content: bytes):
    """A schema file that is not JSON is ``InvalidSchemaError`` naming schema and track."""
    path = registry / "telemetry.Bad" / "v1.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(InvalidSchemaError) as info:
        DirectorySchemaSource(registry).fetch("telemetry.Bad", "v1")
    assert (info.value.schema, info.value.track) == ("telemetry.Bad", "v1")


@pytest.mark.parametrize("document", [[], "string", 42, None])
def test_json_that_is_not_a_schema_is_an_invalid_schema(registry: Path, document: Any):
    """Valid JSON that is neither an object nor a boolean is ``InvalidSchemaError``."""
    _put(registry, "telemetry.Odd", "v1", document)
    with pytest.raises(InvalidSchemaError):
        DirectorySchemaSource(registry).fetch("telemetry.Odd", "v1")


def test_boolean_schema_is_served(registry: Path):
    """``true`` is a valid JSON Schema and is served as such."""
    _put(registry, "telemetry.Anything", "v1", True)
    assert DirectorySchemaSource(registry).fetch("telemetry.Anything", "v1").document is True


def test_missing_root_is_registry_unavailable(tmp_path: Path):
    """A registry directory that does not exist is an outage, not a missing schema."""
    source = DirectorySchemaSource(tmp_path / "nope")
    with pytest.raises(RegistryUnavailableError):
        source.fetch("telemetry.FeedbackEvent", "v1")
    with pytest.raises(RegistryUnavailableError):
        source.known_schemas()


def test_root_removed_after_start_is_registry_unavailable(tmp_path: Path, registry: Path):
    """A registry directory that disappears after the source was made is an outage too."""
    source = DirectorySchemaSource(registry)
    registry.rename(tmp_path / "moved")
    with pytest.raises(RegistryUnavailableError):
        source.fetch("telemetry.FeedbackEvent", "v1")


# --------------------------------------------------------------------------- known_schemas


def test_known_schemas_lists_names_and_tracks(registry: Path):
    """``known_schemas`` maps every schema directory to its sorted tracks."""
    _put(registry, "telemetry.FeedbackEvent", "v10", {})
    assert dict(DirectorySchemaSource(registry).known_schemas()) == {
        "marketdata.Quote": ("v1",),
        "telemetry.FeedbackEvent": ("v1", "v10", "v2"),
    }


def test_known_schemas_skips_what_is_not_a_schema(registry: Path):
    """Hidden or oddly named directories, empty ones, stray files and non-JSON files are skipped."""
    _put(registry, ".git", "v1", {})
    _put(registry, "bad name", "v1", {})
    (registry / "telemetry.Empty").mkdir()
    (registry / "README.md").write_text("hello")
    (registry / "marketdata.Quote" / "notes.txt").write_text("hello")
    assert set(DirectorySchemaSource(registry).known_schemas()) == {
        "marketdata.Quote",
        "telemetry.FeedbackEvent",
    }


# --------------------------------------------------------------------------- special files


def _in_thread(call: Any) -> list[BaseException]:
    """Run ``call`` in a daemon thread; its exception, if any. A hang fails instead of hanging."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # a guard against hanging the suite, not a deadline the code must meet
    assert not worker.is_alive(), "reading the registry blocked"
    return raised


def test_fifo_track_file_is_refused_naming_its_path(registry: Path):
    """A FIFO where a track file should be is an ``InvalidSchemaError`` naming it, not a hang."""
    fifo = registry / "telemetry.Piped" / "v1.json"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    source = DirectorySchemaSource(registry)
    [raised] = _in_thread(lambda: source.fetch("telemetry.Piped", "v1"))
    assert isinstance(raised, InvalidSchemaError)
    assert str(fifo.resolve()) in str(raised)
    assert "FIFO" in str(raised)
    assert (raised.schema, raised.track) == ("telemetry.Piped", "v1")


def test_symlink_to_a_fifo_inside_the_registry_is_refused(registry: Path):
    """A track file that links to a FIFO inside the registry is refused like the FIFO itself."""
    os.mkfifo(registry / "pipe")
    (registry / "telemetry.FeedbackEvent" / "v3.json").symlink_to(registry / "pipe")
    [raised] = _in_thread(
        lambda: DirectorySchemaSource(registry).fetch("telemetry.FeedbackEvent", "v3")
    )
    assert isinstance(raised, InvalidSchemaError)
    assert "not a regular file" in str(raised)


def test_directory_named_like_a_track_file_is_refused(registry: Path):
    """A directory called ``v1.json`` is refused as not a regular file."""
    (registry / "telemetry.Dir" / "v1.json").mkdir(parents=True)
    with pytest.raises(InvalidSchemaError, match="a directory"):
        DirectorySchemaSource(registry).fetch("telemetry.Dir", "v1")


def test_known_schemas_skips_special_files(registry: Path):
    """A FIFO named like a track is not listed as a track."""
    os.mkfifo(registry / "telemetry.FeedbackEvent" / "v9.json")
    assert DirectorySchemaSource(registry).known_schemas()["telemetry.FeedbackEvent"] == (
        "v1",
        "v2",
    )


def test_engine_with_a_fifo_in_the_registry_skips_without_hanging(registry: Path):
    """Evaluating a schema whose file is a FIFO answers (no usable schema) instead of blocking."""
    from policy_engine import Action, PolicyEngine

    os.mkfifo(registry / "telemetry.FeedbackEvent" / "v3.json")
    decisions: list[Any] = []

    def evaluate() -> None:
        with PolicyEngine(policies=[], registry=registry, metrics=False) as engine:
            decisions.append(engine.evaluate("telemetry.FeedbackEvent", {}, track="v3"))

    assert _in_thread(evaluate) == []
    [decision] = decisions
    assert decision.action is Action.SKIPPED
