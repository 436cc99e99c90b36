"""Same decision everywhere: three processes, one policy set, 100 000 keys, zero disagreements.

Each process is a fresh interpreter with its own hash seed (so no dict order or ``hash()`` can
leak into a bucket) and prints, for every key, the bucket and the mode ``resolve_mode`` gives
and the bucket ``explain`` gives; the outputs must be identical, before the ramp's first step,
with a step in force, and after the last.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KEYS = 100_000
POLICY = """\
version: 1
schemas:
  fleet.Order:
    mode: strict
    key: customer.id
    tracks:
      v1:
        ramp:
          - {at: 2027-01-01T00:00:00Z, canary: 12.5}
          - {at: 2027-01-08T00:00:00Z, canary: 50}
          - {at: 2027-01-15T00:00:00Z, canary: 100}
      v2:
        canary: 33.33
        salt: fleet-order-2027
"""

#: Moments around the ramp: before it, a step in force, after the last step.
MOMENTS = {"before": 1_798_000_000.0, "step": 1_799_000_000.0, "after": 1_800_000_000.0}

SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    from policy_engine import PolicyEngine, Settings

    policies, registry, at, keys = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    digest = hashlib.sha256()
    settings = Settings(policy_watch=False)
    with PolicyEngine(policies, registry, settings=settings, clock=lambda: at, metrics=False) as e:
        for track in ("v1", "v2"):
            for n in range(keys):
                key = f"customer-{n}"
                payload = {"customer": {"id": key}}
                mode = e.resolve_mode("fleet.Order", payload, track=track).value
                decision = e.evaluate("fleet.Order", payload, track=track)
                assert decision.mode.value == mode, (key, track)
                if n % 10 == 0:  # explain builds its sentences: a sample is enough
                    explained = e.explain("fleet.Order", track=track, key=key, at=at)
                    assert explained.mode.value == mode, (key, track)
                    assert explained.bucket == decision.bucket, (key, track)
                digest.update(f"{track} {key} {decision.bucket} {mode}\\n".encode())
    print(digest.hexdigest())
    """
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The policy above and a registry where every object is a valid fleet.Order."""
    root = tmp_path_factory.mktemp("fleet")
    (root / "policies").mkdir()
    (root / "policies" / "fleet.yaml").write_text(POLICY)
    for track in ("v1", "v2"):
        (root / "schemas" / "fleet.Order").mkdir(parents=True, exist_ok=True)
        (root / "schemas" / "fleet.Order" / f"{track}.json").write_text('{"type": "object"}')
    return root / "policies", root / "schemas"


@pytest.mark.parametrize("moment", sorted(MOMENTS))
def test_three_processes_give_the_same_buckets_and_modes(project, moment):
    """Three interpreters with different hash seeds agree on the bucket and the mode of every
    key, with and without a ramp step in force."""
    policies, schemas = project
    runs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(policies), str(schemas),
             str(MOMENTS[moment]), str(KEYS)],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append(done.stdout.strip())
    assert len(set(runs)) == 1, runs
    assert len(runs[0]) == len(hashlib.sha256().hexdigest())


def test_the_moments_differ():
    """The moments straddle the ramp, so the test compares three different canaries (a guard
    against a policy that would make all three runs alike)."""
    assert MOMENTS["before"] < 1_798_761_600 < MOMENTS["step"] < 1_799_971_200 < MOMENTS["after"]
