"""PolicyEngine.reload: real file edits in tmp_path, atomic swap, bad edits keep the old set."""

from __future__ import annotations

import pytest

from policy_engine import Action, Mode, PolicyEngine, PolicyLoadError
from policy_engine.policy.load import load_policy_set

INVALID = {"id": "o-1", "price": -1}


def test_edit_then_reload_uses_the_new_rule(make_engine, one_rule, policy_dir):
    """After a file is edited, reload() returns True and new decisions follow the new rule."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    before = eng.checksum
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.LOGGED
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: strict"))
    assert eng.reload() is True
    assert eng.checksum != before
    d = eng.evaluate("shop.Order", INVALID, key="k")
    assert (d.mode, d.action, d.policy_checksum) == (Mode.STRICT, Action.REJECTED, eng.checksum)


def test_reload_unchanged_returns_false(make_engine, one_rule):
    """Reloading files that did not change returns False and keeps the checksum."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    before = eng.checksum
    assert eng.reload() is False
    assert eng.checksum == before


def test_reload_of_an_empty_directory_is_unchanged(make_engine):
    """An empty policy directory reloaded again is no change (False), not a new set each time."""
    eng = make_engine()
    assert eng.reload() is False
    assert eng.reload() is False


def test_rewriting_the_same_content_is_unchanged(make_engine, one_rule, policy_dir):
    """The checksum covers content: rewriting a file byte for byte is no change."""
    text = one_rule("shop.Order", "mode: warn")
    eng = make_engine(text)
    (policy_dir / "rules.yaml").write_text(text)
    assert eng.reload() is False


def test_broken_edit_keeps_the_old_set(make_engine, one_rule, policy_dir):
    """A bad edit raises PolicyLoadError and the old set keeps serving unchanged."""
    eng = make_engine(one_rule("shop.Order", "mode: strict\ncanary: 50"))
    checksum = eng.checksum
    keys = [f"user-{n}" for n in range(30)]
    decisions = [eng.evaluate("shop.Order", INVALID, key=k).to_dict() for k in keys]
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: loud\ncanary: 500"))
    with pytest.raises(PolicyLoadError) as info:
        eng.reload()
    assert any(p.file == str(policy_dir / "rules.yaml") for p in info.value.problems)
    assert eng.checksum == checksum
    assert [eng.evaluate("shop.Order", INVALID, key=k).to_dict() for k in keys] == decisions


def test_a_bad_second_file_is_not_half_applied(make_engine, one_rule, policy_dir):
    """A good edit in one file plus a broken new file: nothing of the change is applied."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    checksum = eng.checksum
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: strict"))
    (policy_dir / "zz-broken.yaml").write_text("version: 2\n")
    with pytest.raises(PolicyLoadError):
        eng.reload()
    assert eng.checksum == checksum
    assert eng.evaluate("shop.Order", INVALID, key="k").mode is Mode.WARN


def test_added_and_removed_files_are_changes(make_engine, one_rule, policy_dir):
    """Adding a policy file, then removing it, are both changes picked up by reload()."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    extra = policy_dir / "legacy.yaml"
    extra.write_text(one_rule("shop.Legacy", "mode: strict"))
    assert eng.reload() is True
    assert eng.evaluate("shop.Legacy", {"name": 1}, key="k").action is Action.REJECTED
    extra.unlink()
    assert eng.reload() is True
    assert eng.evaluate("shop.Legacy", {"name": 1}, key="k").action is Action.LOGGED


def test_fixing_a_broken_edit_recovers(make_engine, one_rule, policy_dir):
    """After a failed reload, fixing the file and reloading applies the fix."""
    eng = make_engine(one_rule("shop.Order", "mode: warn"))
    (policy_dir / "rules.yaml").write_text("version: 1\nschemas: [\n")
    with pytest.raises(PolicyLoadError):
        eng.reload()
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: off"))
    assert eng.reload() is True
    assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.SKIPPED


def test_engine_built_from_a_policy_set_does_not_reload(source, clock, tmp_path, one_rule):
    """An engine given a loaded PolicySet serves it; reload() has no files to read (False)."""
    path = tmp_path / "p.yaml"
    path.write_text(one_rule("shop.Order", "mode: strict"))
    policy_set = load_policy_set([path])
    with PolicyEngine(policies=policy_set, registry=source, clock=clock) as eng:
        assert eng.checksum == policy_set.checksum
        assert eng.reload() is False
        assert eng.evaluate("shop.Order", INVALID, key="k").action is Action.REJECTED


def test_bad_policy_at_construction_raises(policy_dir, source, clock, one_rule):
    """A policy directory that does not load makes the constructor raise PolicyLoadError."""
    (policy_dir / "rules.yaml").write_text(one_rule("shop.Order", "mode: strict\nbaseline: off2"))
    with pytest.raises(PolicyLoadError):
        PolicyEngine(policies=str(policy_dir), registry=source, clock=clock)


def test_close_closes_the_source(make_engine, source):
    """The engine is a context manager and closing it closes its schema source."""
    with make_engine() as eng:
        eng.evaluate("shop.Order", INVALID)
    assert source.closed is True
