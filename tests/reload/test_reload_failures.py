"""A failed reload is visible the same way whoever triggered it: watcher, SIGHUP or a call.

Visible means: ``status()`` not healthy with the error (``file:line:col``) and its time,
``policy_reloads_total{result="error"}`` counted, one ERROR line on ``policy_engine.reload``
(not repeated while the same error stays), and one line when it clears.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from policy_engine import Mode, PolicyEngine, PolicyLoadError
from policy_engine.policy import load
from policy_engine.reload import install_sighup_reload

SCHEMA_DOC = '{"type": "object"}'
GOOD = "version: 1\nschemas:\n  x.Y:\n    mode: warn\n"
FIXED = "version: 1\nschemas:\n  x.Y:\n    mode: strict\n"
HEAD = "version: 1\nschemas:\n  x.Y:\n    mode: strict\n"

#: Files whose values once escaped the loader as a bare ValueError: (name, text, line:col).
BROKEN = [
    ("impossible-date", HEAD + "    ramp: [{at: 2026-13-45T00:00:00Z, canary: 5}]\n", "5:17"),
    ("int-tag", HEAD + "    canary: !!int abc\n", "5:13"),
    ("long-int", HEAD + "    canary: " + "7" * 4400 + "\n", "5:13"),
    ("bad-yaml", HEAD + "    canary: [\n", "6:1"),
]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (bounded, never a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def put(path: Path, text: str) -> None:
    """Write ``path`` whole in one step (a file beside the directory, renamed over it), as an
    editor or a ConfigMap swap does: a watcher must never catch it truncated and half-written,
    which would be another error than the one a test is about."""
    staged = path.parent.parent / f".{path.name}.staged"
    staged.write_text(text)
    os.replace(staged, path)


@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    """An embedded registry with x.Y v1."""
    (tmp_path / "schemas" / "x.Y").mkdir(parents=True)
    (tmp_path / "schemas" / "x.Y" / "v1.json").write_text(SCHEMA_DOC)
    return tmp_path / "schemas"


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A policy directory holding a good p.yaml (x.Y in warn mode)."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(GOOD)
    return tmp_path / "policies"


@pytest.fixture
def metrics() -> CollectorRegistry:
    """A Prometheus registry of the test's own."""
    return CollectorRegistry()


@pytest.fixture
def engine(
    policies: Path, registry_dir: Path, metrics: CollectorRegistry
) -> Iterator[PolicyEngine]:
    """An engine over ``policies`` counting into ``metrics``, not watching yet."""
    with PolicyEngine(str(policies), str(registry_dir), metrics_registry=metrics) as eng:
        yield eng


def errors_counted(metrics: CollectorRegistry) -> float:
    return metrics.get_sample_value("policy_reloads_total", {"result": "error"}) or 0.0


def messages(caplog: pytest.LogCaptureFixture, words: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if words in r.getMessage()]


def assert_failure_visible(
    engine: PolicyEngine, metrics: CollectorRegistry, where: str, good: str
) -> None:
    """The error is in status() with file:line:col and a time, counted, and the old set serves."""
    status = engine.status()
    assert not status.healthy
    assert isinstance(status.last_error, PolicyLoadError)
    assert where in str(status.last_error)
    assert status.last_error_at is not None
    assert status.checksum == good
    assert errors_counted(metrics) >= 1
    assert engine.resolve_mode("x.Y", key="k", track="v1") is Mode.WARN


@pytest.mark.parametrize(("text", "place"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_watched_reload_of_a_broken_file_is_visible_and_clears(
    engine: PolicyEngine,
    policies: Path,
    metrics: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    text: str,
    place: str,
):
    """The watcher's failed reload shows in status, metric and one log line; the fix clears it."""
    good = engine.checksum
    caplog.set_level(logging.INFO, logger="policy_engine.reload")
    assert engine.start_watching()
    put(policies / "p.yaml", text)
    assert wait_for(lambda: not engine.status().healthy)
    assert_failure_visible(engine, metrics, f"{policies / 'p.yaml'}:{place}", good)
    put(policies / "note.txt", "another change, the same broken p.yaml")
    assert wait_for(lambda: errors_counted(metrics) >= 2)
    (failed,) = messages(caplog, "policy reload failed")
    assert failed.levelno == logging.ERROR
    assert f"{policies / 'p.yaml'}:{place}" in failed.getMessage()

    put(policies / "p.yaml", FIXED)
    assert wait_for(lambda: engine.status().healthy)
    assert engine.resolve_mode("x.Y", key="k", track="v1") is Mode.STRICT
    # The line follows the clearing (the reload thread may not have logged it yet).
    assert wait_for(lambda: messages(caplog, "policy reload error cleared"))
    (cleared,) = messages(caplog, "policy reload error cleared")
    assert cleared.levelno == logging.WARNING


@pytest.mark.parametrize(("text", "place"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_sighup_reload_of_a_broken_file_is_visible_the_same_way(
    engine: PolicyEngine,
    policies: Path,
    metrics: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    text: str,
    place: str,
):
    """SIGHUP with a broken file: same status, metric and ERROR line as the watcher; no raise."""
    good = engine.checksum
    caplog.set_level(logging.INFO, logger="policy_engine.reload")
    restore = install_sighup_reload(engine)
    try:
        (policies / "p.yaml").write_text(text)
        os.kill(os.getpid(), signal.SIGHUP)  # an exception escaping the handler fails the test
        assert wait_for(lambda: messages(caplog, "SIGHUP reload failed"))
        assert_failure_visible(engine, metrics, f"{policies / 'p.yaml'}:{place}", good)
        (failed,) = messages(caplog, "policy reload failed")
        assert failed.levelno == logging.ERROR

        os.kill(os.getpid(), signal.SIGHUP)  # the same error again: said once more, not repeated
        assert wait_for(lambda: messages(caplog, "failed again with the same error"))
        assert len(messages(caplog, "policy reload failed")) == 1
        assert errors_counted(metrics) == 2

        (policies / "p.yaml").write_text(FIXED)
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: messages(caplog, "SIGHUP reload: new policy set"))
    finally:
        restore()
    assert engine.status().healthy
    assert len(messages(caplog, "policy reload error cleared")) == 1


def test_healthy_again_only_once_the_fixed_set_serves(engine: PolicyEngine, policies: Path):
    """status() never says healthy while the set that failed to replace is still in force: at
    the moment the error clears (its log line), the fixed set already serves. Readers such as
    /status and a probe take status() without the reload's lock."""
    (policies / "p.yaml").write_text(BROKEN[0][1])
    with pytest.raises(PolicyLoadError):
        engine.reload()
    seen: list[tuple[bool, Mode]] = []

    class Observe(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "error cleared" in record.getMessage():
                mode = engine.resolve_mode("x.Y", key="k", track="v1")
                seen.append((engine.status().healthy, mode))

    observer = Observe()
    reload_logger = logging.getLogger("policy_engine.reload")
    reload_logger.addHandler(observer)
    try:
        (policies / "p.yaml").write_text(FIXED)
        assert engine.reload() is True
    finally:
        reload_logger.removeHandler(observer)
    assert seen == [(True, Mode.STRICT)]


def test_an_unexpected_loader_exception_is_a_visible_failed_reload(
    engine: PolicyEngine,
    metrics: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    """Whatever the loader raises, reload() raises PolicyLoadError and records it like any other."""

    def broken(*args: object, **kwargs: object) -> object:
        raise ValueError("not a policy problem at all")

    monkeypatch.setattr(load, "load_policy_set", broken)
    good = engine.checksum
    with pytest.raises(PolicyLoadError) as info:
        engine.reload()
    assert isinstance(info.value.__cause__, ValueError)
    assert engine.status().last_error is info.value
    assert errors_counted(metrics) == 1
    assert engine.checksum == good
    assert "not a policy problem at all" in messages(caplog, "policy reload failed")[0].getMessage()


@pytest.mark.parametrize(("text", "place"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_file_at_construction_raises_policy_load_error(
    policies: Path,
    registry_dir: Path,
    caplog: pytest.LogCaptureFixture,
    text: str,
    place: str,
):
    """PolicyEngine(...) over a broken file raises PolicyLoadError at file:line:col, no log line."""
    (policies / "p.yaml").write_text(text)
    with pytest.raises(PolicyLoadError) as info:
        PolicyEngine(str(policies), str(registry_dir), metrics=False)
    assert f"{policies / 'p.yaml'}:{place}" in str(info.value)
    assert messages(caplog, "policy reload failed") == []  # nothing was serving: the raise says it
