"""Hot reload with real files: every way a policy file changes on a host is picked up."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import mmh3
import pytest

from policy_engine import Mode, PolicyEngine, PolicyLoadError
from policy_engine.hooks import ReloadEvent
from policy_engine.reload import install_sighup_reload

SCHEMA_DOC = '{"type": "object", "properties": {"n": {"type": "integer"}}}'


def rule(mode: str, schema: str = "x.Y") -> str:
    """A policy file with one rule for ``schema``."""
    return f"version: 1\nschemas:\n  {schema}:\n    mode: {mode}\n"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (bounded, never a timing assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """An embedded registry with x.Y v1 and a.b v1."""
    root = tmp_path / "schemas"
    for name in ("x.Y", "a.b"):
        (root / name).mkdir(parents=True)
        (root / name / "v1.json").write_text(SCHEMA_DOC)
    return root


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A policy directory holding p.yaml with x.Y in warn mode."""
    root = tmp_path / "policies"
    root.mkdir()
    (root / "p.yaml").write_text(rule("warn"))
    return root


@pytest.fixture
def watched(policies: Path, registry: Path) -> Iterator[PolicyEngine]:
    """An engine over ``policies`` that is watching them."""
    engine = PolicyEngine(str(policies), str(registry))
    assert engine.start_watching()
    yield engine
    engine.close()


def mode_of(engine: PolicyEngine, schema: str = "x.Y") -> Mode:
    return engine.resolve_mode(schema, key="k", track="v1")


def test_in_place_write_is_picked_up(watched: PolicyEngine, policies: Path) -> None:
    """Overwriting the file in place loads the new rule."""
    (policies / "p.yaml").write_text(rule("strict"))
    assert wait_for(lambda: mode_of(watched) is Mode.STRICT)


def test_write_to_temp_and_rename_is_picked_up(watched: PolicyEngine, policies: Path) -> None:
    """An editor-style save (write a temporary file, rename it over the old) is picked up."""
    temp = policies / ".p.yaml.swp"
    temp.write_text(rule("off"))
    os.replace(temp, policies / "p.yaml")
    assert wait_for(lambda: mode_of(watched) is Mode.OFF)


def test_delete_and_recreate_is_picked_up(watched: PolicyEngine, policies: Path) -> None:
    """Deleting the file and writing it again loads the new content."""
    (policies / "p.yaml").unlink()
    (policies / "p.yaml").write_text(rule("strict"))
    assert wait_for(lambda: mode_of(watched) is Mode.STRICT)


def test_a_new_file_is_picked_up(watched: PolicyEngine, policies: Path) -> None:
    """A file added to the directory joins the policy set."""
    (policies / "more.yml").write_text(rule("strict", schema="a.b"))
    assert wait_for(lambda: mode_of(watched, "a.b") is Mode.STRICT)
    assert any(f.endswith("more.yml") for f in watched.status().files)


def test_a_removed_file_leaves_the_set(watched: PolicyEngine, policies: Path) -> None:
    """Removing a file drops its rules: the schema falls back to the global default."""
    (policies / "more.yaml").write_text(rule("strict", schema="a.b"))
    assert wait_for(lambda: mode_of(watched, "a.b") is Mode.STRICT)
    (policies / "more.yaml").unlink()
    assert wait_for(lambda: mode_of(watched, "a.b") is Mode.WARN)  # REGISTRY_ENFORCEMENT default


def configmap(root: Path, version: int, files: dict[str, str]) -> None:
    """Lay out or update ``root`` the way kubelet updates a mounted ConfigMap.

    Files live in ``..<timestamp>/``; ``..data`` links to it; each visible name links to
    ``..data/<name>``. An update writes a new timestamped directory, points ``..data_tmp`` at it
    and renames that over ``..data`` (one atomic step), then removes the old directory.
    """
    stamp = root / f"..2026_11_25_12_00_0{version}.000000001"
    stamp.mkdir()
    for name, text in files.items():
        (stamp / name).write_text(text)
    tmp_link = root / "..data_tmp"
    tmp_link.symlink_to(stamp.name)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    os.replace(tmp_link, root / "..data")
    for name in files:
        link = root / name
        if not link.is_symlink():
            link.symlink_to(Path("..data") / name)
    if old is not None:
        shutil.rmtree(root / old)


def test_configmap_symlink_swap_is_picked_up(tmp_path: Path, registry: Path) -> None:
    """A kubelet-style `..data` symlink swap loads the new content through the same paths."""
    root = tmp_path / "configmap"
    root.mkdir()
    configmap(root, 1, {"p.yaml": rule("warn")})
    with PolicyEngine(str(root), str(registry)) as engine:
        assert engine.policy_set.files == (str(root / "p.yaml"),)  # hidden ..dirs are skipped
        assert engine.start_watching()
        configmap(root, 2, {"p.yaml": rule("strict")})
        assert wait_for(lambda: mode_of(engine) is Mode.STRICT)
        configmap(root, 3, {"p.yaml": rule("off")})
        assert wait_for(lambda: mode_of(engine) is Mode.OFF)


@pytest.mark.parametrize(
    "bad",
    [
        "version: 1\nschemas:\n  x.Y: {mode: strict\n",  # invalid YAML (half-written)
        rule("loud"),  # schema error
        "version: 1\nschemas:\n  x.Y:\n    mode: strict\n    colour: red\n",  # unknown field
    ],
    ids=["invalid-yaml", "bad-mode", "unknown-field"],
)
def test_a_bad_change_keeps_the_last_good_set(
    watched: PolicyEngine, policies: Path, bad: str
) -> None:
    """A broken file leaves the previous set serving, visible in status(); a fix then loads."""
    good = watched.checksum
    (policies / "p.yaml").write_text(bad)
    assert wait_for(lambda: not watched.status().healthy)
    status = watched.status()
    assert status.checksum == good
    assert mode_of(watched) is Mode.WARN
    assert isinstance(status.last_error, PolicyLoadError)
    assert str(policies / "p.yaml") in str(status.last_error)
    (policies / "p.yaml").write_text(rule("strict"))
    assert wait_for(lambda: mode_of(watched) is Mode.STRICT)
    assert wait_for(lambda: watched.status().healthy)  # the set swaps in, then the error clears
    assert watched.status().last_success_at is not None


def test_conflicting_files_keep_the_last_good_set(watched: PolicyEngine, policies: Path) -> None:
    """A second file defining the same exact name is a load error; the old set keeps serving."""
    good = watched.checksum
    (policies / "q.yaml").write_text(rule("strict"))
    assert wait_for(lambda: not watched.status().healthy)
    assert watched.checksum == good
    assert "already defined" in str(watched.status().last_error)


def test_deleting_a_file_that_hid_a_glob_tie_keeps_the_last_good_set(
    tmp_path: Path, registry: Path
) -> None:
    """Removing the more specific glob exposes a tie between two others: refused, old set kept."""
    root = tmp_path / "globs"
    root.mkdir()
    (root / "g1.yaml").write_text('version: 1\nschemas:\n  "a.*": {mode: warn}\n')
    (root / "g2.yaml").write_text('version: 1\nschemas:\n  "*.b": {mode: off}\n')
    (root / "g3.yaml").write_text('version: 1\nschemas:\n  "a.b*": {mode: strict}\n')
    with PolicyEngine(str(root), str(registry)) as engine:  # the registry knows a.b
        assert engine.start_watching()
        assert mode_of(engine, "a.b") is Mode.STRICT
        (root / "g3.yaml").unlink()
        assert wait_for(lambda: not engine.status().healthy)
        assert "equally specific" in str(engine.status().last_error)
        assert mode_of(engine, "a.b") is Mode.STRICT


def test_a_reload_error_is_logged_once(
    watched: PolicyEngine, policies: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same broken state seen by several change events is logged once, with file:line:col."""
    attempts: list[str] = []

    class Recorder:
        def after_reload(self, event: ReloadEvent) -> None:
            attempts.append(event.result)

    watched._reload_observers = (*watched._reload_observers, Recorder())
    with caplog.at_level(logging.ERROR, logger="policy_engine.reload"):
        (policies / "p.yaml").write_text(rule("loud"))
        assert wait_for(lambda: not watched.status().healthy)
        for i in range(3):  # more events, same broken p.yaml: each one is a failed attempt
            seen = len(attempts)
            (policies / f"note{i}.txt").write_text("not a policy")
            assert wait_for(lambda seen=seen: len(attempts) > seen and attempts[-1] == "error")
    errors = [r for r in caplog.records if "policy reload failed" in r.getMessage()]
    assert len(errors) == 1
    assert f"{policies / 'p.yaml'}:4:11" in errors[0].getMessage()


def test_an_unchanged_checksum_is_a_no_op(watched: PolicyEngine, policies: Path) -> None:
    """Rewriting identical content triggers a reload attempt that changes nothing."""
    seen: list[str] = []

    class Recorder:
        def after_reload(self, event: ReloadEvent) -> None:
            seen.append(event.result)

    watched._reload_observers = (Recorder(),)  # observe the watcher's own attempts
    before = watched.checksum
    (policies / "p.yaml").write_text(rule("warn"))
    assert wait_for(lambda: "unchanged" in seen)
    assert watched.checksum == before
    assert "success" not in seen


def test_close_stops_the_watcher_thread(policies: Path, registry: Path) -> None:
    """close() stops the watcher: no thread is left and later edits are not loaded."""
    engine = PolicyEngine(str(policies), str(registry))
    assert engine.start_watching()
    assert any(t.name == "policy-engine-watcher" for t in threading.enumerate())
    engine.close()
    assert wait_for(lambda: all(t.name != "policy-engine-watcher" for t in threading.enumerate()))
    assert engine.status().watching is False


def test_from_env_watches_when_policy_watch_is_true(policies: Path, registry: Path) -> None:
    """from_env() starts the watcher with POLICY_WATCH=true and not with false."""
    env = {"POLICY_PATHS": str(policies), "REGISTRY_URL": str(registry)}
    with PolicyEngine.from_env({**env, "POLICY_WATCH": "true"}) as on:
        assert on.status().watching
        (policies / "p.yaml").write_text(rule("strict"))
        assert wait_for(lambda: mode_of(on) is Mode.STRICT)
    with PolicyEngine.from_env({**env, "POLICY_WATCH": "false"}) as off:
        assert not off.status().watching


def test_start_watching_without_directories_returns_false(registry: Path, tmp_path: Path) -> None:
    """An engine whose policy path does not exist has nothing to watch."""
    env = {"REGISTRY_URL": str(registry)}
    cwd = os.getcwd()
    os.chdir(tmp_path)  # no ./policies here: the default path is missing
    try:
        with PolicyEngine.from_env(env) as engine:
            assert engine.status().watching is False
    finally:
        os.chdir(cwd)


def test_sighup_reloads(policies: Path, registry: Path) -> None:
    """With the SIGHUP handler installed, SIGHUP reloads the policies."""
    with PolicyEngine(str(policies), str(registry)) as engine:
        restore = install_sighup_reload(engine)
        try:
            (policies / "p.yaml").write_text(rule("strict"))
            assert mode_of(engine) is Mode.WARN  # not watching: nothing happened yet
            os.kill(os.getpid(), signal.SIGHUP)
            assert wait_for(lambda: mode_of(engine) is Mode.STRICT)
        finally:
            restore()


def test_unchanged_rules_and_validators_are_reused_across_reloads(
    policies: Path, registry: Path
) -> None:
    """A reload keeps the compiled validator and resolved rule of an unchanged (schema, track)."""
    with PolicyEngine(str(policies), str(registry)) as engine:
        engine.evaluate("x.Y", {"n": 1}, key="k", track="v1")
        engine.evaluate("a.b", {"n": 1}, key="k", track="v1")
        before = {k: (r.effective, r.slot.compiled) for k, r in engine._state.routes.items()}
        (policies / "p.yaml").write_text(rule("warn") + "  a.b:\n    mode: strict\n")
        assert engine.reload()
        after = {k: (r.effective, r.slot.compiled) for k, r in engine._state.routes.items()}
    assert after[("x.Y", "v1")][0] is before[("x.Y", "v1")][0]  # same rule object
    assert after[("a.b", "v1")][0] is not before[("a.b", "v1")][0]  # its rule changed
    assert after[("x.Y", "v1")][1] is before[("x.Y", "v1")][1]  # same compiled validator
    assert after[("a.b", "v1")][1] is before[("a.b", "v1")][1]


# ---------------------------------------------------------------- atomicity under load

SET_A = "version: 1\nschemas:\n  x.Y:\n    mode: strict\n    canary: 30\n    salt: set-a\n"
SET_B = "# set B\n\nversion: 1\nschemas:\n  x.Y:\n    mode: warn\n    canary: 70\n    salt: set-b\n"


def expected(text: str, key: str) -> tuple[int, float, Mode]:
    """(rule line, canary, mode) that the policy ``text`` gives ``key``, computed from SPEC §3."""
    if text is SET_A:
        line, canary, mode, baseline, salt = 3, 30.0, Mode.STRICT, Mode.WARN, "set-a"
    else:
        line, canary, mode, baseline, salt = 5, 70.0, Mode.WARN, Mode.OFF, "set-b"
    bucket = (mmh3.hash(f"{salt}:{key}".encode(), 0, signed=False) * 10000) >> 32
    return line, canary, (mode if bucket < round(canary * 100) else baseline)


def test_every_evaluation_sees_exactly_one_policy_set(policies: Path, registry: Path) -> None:
    """8 threads evaluate while the file flips 500 times between two sets: no mix, no exception."""
    (policies / "p.yaml").write_text(SET_A)
    engine = PolicyEngine(str(policies), str(registry))
    engine.start_watching()  # the watcher reloads too, concurrently with the writer below
    stop = threading.Event()
    failures: list[str] = []
    counts = {"A": 0, "B": 0}
    lock = threading.Lock()

    def evaluate(worker: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{worker}-{i % 97}"
            i += 1
            try:
                d = engine.evaluate("x.Y", {"n": i}, key=key, track="v1")
            except Exception as exc:  # pragma: no cover - the failure being guarded against
                failures.append(f"raised {exc!r}")
                return
            got = (d.rule.line if d.rule else -1, d.canary, d.mode)
            options = {"A": expected(SET_A, key), "B": expected(SET_B, key)}
            match = [name for name, want in options.items() if want == got]
            if not match:
                failures.append(f"{key}: {got} matches neither {options}")
                return
            with lock:
                counts[match[0]] += 1

    threads = [threading.Thread(target=evaluate, args=(w,)) for w in range(8)]
    # With 8 busy threads the writer waits ~8 switch intervals for the GIL after each file
    # operation; a shorter interval keeps 500 flips within seconds instead of minutes.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    for t in threads:
        t.start()
    try:
        for flip in range(500):
            text = SET_B if flip % 2 == 0 else SET_A
            temp = policies / ".p.yaml.tmp"
            temp.write_text(text)
            os.replace(temp, policies / "p.yaml")
            engine.reload()
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        engine.close()
        sys.setswitchinterval(interval)
    assert failures == []
    assert counts["A"] > 0
    assert counts["B"] > 0


def test_a_reload_lists_the_registry_once(policies: Path, registry: Path) -> None:
    """The glob check and the metric labels share one registry listing per reload."""
    from prometheus_client import CollectorRegistry

    from policy_engine import DirectorySchemaSource

    class Counting(DirectorySchemaSource):
        calls = 0

        def known_schemas(self):  # type: ignore[no-untyped-def]
            Counting.calls += 1
            return super().known_schemas()

    with PolicyEngine(
        str(policies), Counting(registry), metrics_registry=CollectorRegistry()
    ) as engine:
        before = Counting.calls
        (policies / "p.yaml").write_text(rule("strict"))
        assert engine.reload()
        assert Counting.calls - before == 1
        assert engine.registry_listing == {"a.b": ("v1",), "x.Y": ("v1",)}
