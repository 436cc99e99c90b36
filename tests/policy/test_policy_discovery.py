"""Which files a policy path contributes: the one symlink rule, for files and directories alike.

The rule (``discover_files``): a symlink is followed when its target lies inside the same policy
path and is an error when it lies outside (the watcher would never see that file change); a file
reached twice is read once; a dangling link, a loop or a special file is a warning. Kubernetes
ConfigMap mounts (``p.yaml -> ..data/p.yaml``, ``..data -> ..<timestamp>``) follow from it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from policy_engine.errors import PolicyLoadError, Problem
from policy_engine.policy.load import load_policy_set


def rule(schema: str, mode: str = "strict") -> str:
    """A policy file with one rule for ``schema``."""
    return f"version: 1\nschemas:\n  {schema}: {{mode: {mode}}}\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _problems(root: Path) -> list[Problem]:
    with pytest.raises(PolicyLoadError) as info:
        load_policy_set([root])
    return info.value.problems


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A policy directory with one rule file, beside a directory outside it."""
    _write(tmp_path / "policies" / "base.yaml", rule("t.base"))
    _write(tmp_path / "outside" / "far.yaml", rule("t.far"))
    return tmp_path / "policies"


def test_a_file_link_inside_the_path_is_read_once(root: Path):
    """A link to a file of the same policy path is followed, and the file is read only once."""
    (root / "alias.yaml").symlink_to("base.yaml")
    policy_set = load_policy_set([root])
    assert policy_set.files == (str(root / "alias.yaml"),)  # the first of its paths, sorted
    assert list(policy_set.exact) == ["t.base"]


def test_a_directory_link_inside_the_path_is_followed(root: Path):
    """A link to a directory of the same policy path is read like the directory itself."""
    _write(root / "releases" / "v2" / "team.yaml", rule("t.team"))
    (root / "current").symlink_to(Path("releases") / "v2")
    policy_set = load_policy_set([root])
    assert sorted(policy_set.exact) == ["t.base", "t.team"]
    assert str(root / "current" / "team.yaml") in policy_set.files


def test_a_hidden_directory_is_read_through_a_link_to_it(root: Path):
    """A link into a hidden directory reads what it points at (how ConfigMap files appear)."""
    _write(root / ".shared" / "team.yaml", rule("t.team"))
    (root / "team").symlink_to(".shared")
    assert sorted(load_policy_set([root]).exact) == ["t.base", "t.team"]


@pytest.mark.parametrize("target", ["outside/far.yaml", "outside"], ids=["file", "directory"])
def test_a_link_outside_the_policy_path_is_an_error(root: Path, target: str):
    """A file or directory link leading out of the policy path is refused, naming both ends."""
    link = root / ("far.yaml" if target.endswith(".yaml") else "far")
    link.symlink_to(root.parent / target)
    (error,) = [p for p in _problems(root) if p.severity == "error"]
    assert (error.file, error.line, error.column) == (str(link), 1, 1)
    assert "outside the policy path" in error.message
    assert str((root.parent / target).resolve()) in error.message


def test_a_link_outside_to_a_non_policy_file_is_ignored(root: Path):
    """A link out of the policy path to a file that would not be read anyway is no problem."""
    _write(root.parent / "outside" / "notes.md", "hello")
    (root / "notes.md").symlink_to(root.parent / "outside" / "notes.md")
    assert load_policy_set([root]).warnings == ()


def test_a_policy_path_that_is_itself_a_link_is_read(root: Path, tmp_path: Path):
    """A policy path given directly is read wherever it points, a file or a directory."""
    (tmp_path / "linked-dir").symlink_to(root)
    (tmp_path / "linked.yaml").symlink_to(root.parent / "outside" / "far.yaml")
    policy_set = load_policy_set([tmp_path / "linked-dir", tmp_path / "linked.yaml"])
    assert sorted(policy_set.exact) == ["t.base", "t.far"]


def test_a_dangling_link_is_a_warning_and_the_rest_loads(root: Path):
    """A link to nothing is skipped with a warning at the link; the set still loads."""
    (root / "gone.yaml").symlink_to("deleted.yaml")
    policy_set = load_policy_set([root])
    assert list(policy_set.exact) == ["t.base"]
    (warning,) = policy_set.warnings
    assert (warning.file, warning.line, warning.severity) == (str(root / "gone.yaml"), 1, "warning")
    assert "deleted.yaml, which does not exist" in warning.message


def test_a_link_loop_is_a_warning(root: Path):
    """Two links pointing at each other are skipped with a warning each, not followed forever."""
    (root / "a.yaml").symlink_to("b.yaml")
    (root / "b.yaml").symlink_to("a.yaml")
    policy_set = load_policy_set([root])
    assert sorted(Path(w.file).name for w in policy_set.warnings) == ["a.yaml", "b.yaml"]


def test_a_directory_link_back_up_the_tree_is_not_followed_again(root: Path):
    """A link to an ancestor directory does not read its files twice or recurse forever."""
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to("..")
    policy_set = load_policy_set([root])
    assert policy_set.files == (str(root / "base.yaml"),)
    assert policy_set.warnings == ()


def test_a_fifo_named_like_a_policy_is_skipped_without_hanging(root: Path):
    """A FIFO named ``*.yaml`` is skipped with a warning; opening it would block forever."""
    os.mkfifo(root / "pipe.yaml")
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(load_policy_set([root])), daemon=True)
    thread.start()
    thread.join(60)
    assert result, "loading blocked on the FIFO"
    (warning,) = result[0].warnings  # type: ignore[attr-defined]
    assert "not a regular file" in warning.message


def test_a_configmap_mount_loads_through_its_links(tmp_path: Path):
    """kubelet's layout (visible links into ``..data``, itself a link) loads each file once."""
    stamp = tmp_path / "..2026_01_01_00_00_00.1"
    _write(stamp / "a.yaml", rule("t.a"))
    _write(stamp / "b.yaml", rule("t.b"))
    (tmp_path / "..data").symlink_to(stamp.name)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).symlink_to(Path("..data") / name)
    policy_set = load_policy_set([tmp_path])
    assert policy_set.files == (str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"))
    assert policy_set.warnings == ()
