"""Canary bucketing (SPEC §3.5): the formula, its properties, and the published test vectors.

The module carries its own pure-Python MurmurHash3 (x86, 32-bit), written from the reference
algorithm and checked against published vectors, so the engine's ``bucket_for`` (which uses the
``mmh3`` C extension) is checked against an independent implementation.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
from pathlib import Path

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy_engine.core.bucket import bucket_for, canary_threshold, canonical_json, payload_hash_key

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "bucketing.md"

_MASK = 0xFFFFFFFF


def _rotl32(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def murmur3_x86_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of ``data`` as an unsigned 32-bit integer (Austin Appleby's algorithm)."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & _MASK
    full = len(data) - len(data) % 4
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = _rotl32((k * c1) & _MASK, 15)
        h ^= (k * c2) & _MASK
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & _MASK
    tail = data[full:]
    k = 0
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if tail:
        k ^= tail[0]
        k = _rotl32((k * c1) & _MASK, 15)
        h ^= (k * c2) & _MASK
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    return h


def reference_bucket(salt: str, key: str) -> int:
    """SPEC §3.5 written out: ``(murmur3(utf8(salt + ":" + key)) * 10000) >> 32``."""
    data = (salt + ":" + key).encode("utf-8", "surrogatepass")
    return (murmur3_x86_32(data) * 10_000) >> 32


# --------------------------------------------------------------------------- the reference itself


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        # Published MurmurHash3_x86_32 vectors (SMHasher / Wikipedia).
        (b"", 0, 0x00000000),
        (b"", 1, 0x514E28B7),
        (b"", 0xFFFFFFFF, 0x81F16F39),
        (b"\xff\xff\xff\xff", 0, 0x76293B50),
        (b"!Ce\x87", 0, 0xF55B516B),
        (b"!Ce\x87", 0x5082EDEE, 0x2362F9DE),
        (b"!Ce", 0, 0x7E4A8634),
        (b"!C", 0, 0xA0F7B07A),
        (b"!", 0, 0x72661CF4),
        (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
        (b"\x00\x00\x00", 0, 0x85F0B427),
        (b"\x00\x00", 0, 0x30F4C306),
        (b"\x00", 0, 0x514E28B7),
        (b"Hello, world!", 1234, 0xFAF6CDB3),
        (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_reference_murmur3_matches_published_vectors(data: bytes, seed: int, expected: int):
    """The test's own murmur3 reproduces published MurmurHash3_x86_32 vectors."""
    assert murmur3_x86_32(data, seed) == expected


# --------------------------------------------------------------------------- the formula


SALTS = st.sampled_from(["telemetry.FeedbackEvent:v2", "marketdata.Quote:v1", "x", "", "Zürich"])


@settings(max_examples=400, deadline=None)
@given(salt=SALTS | st.text(max_size=40), key=st.text(max_size=80))
def test_bucket_for_follows_the_formula(salt: str, key: str):
    """``bucket_for`` equals the SPEC formula computed with an independent murmur3, for any text."""
    assert bucket_for(salt + ":", key) == reference_bucket(salt, key)


@pytest.mark.parametrize(
    "key",
    ["", "p-42", "Zürich", "東京", "🦀 crab", "a" * 1000, "\x00"],
)
def test_bucket_for_follows_the_formula_on_edge_keys(key: str):
    """Empty, non-ASCII, astral, NUL and long keys follow the same formula."""
    assert bucket_for("s:v1:", key) == reference_bucket("s:v1", key)


_SURROGATES = """
import json, sys
from policy_engine.core.bucket import bucket_for
print(json.dumps([bucket_for("s:v1:", k) for k in ["\\ud800", "x\\udfffy", "\\udbff\\ud800"]]))
"""


def test_lone_surrogate_key_gets_a_bucket_instead_of_crashing():
    """A key with a lone surrogate (JSON "\\ud800") is hashed as surrogatepass bytes, no crash."""
    # In a child process: mmh3 5.x segfaults when handed such a str, which would kill pytest.
    result = subprocess.run(
        [sys.executable, "-c", _SURROGATES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    keys = ["\ud800", "x\udfffy", "\udbff\ud800"]
    assert json.loads(result.stdout) == [reference_bucket("s:v1", k) for k in keys]


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=60))
def test_bucket_is_in_range(key: str):
    """Every bucket lies in 0..9999."""
    assert 0 <= bucket_for("s:v1:", key) <= 9999


@pytest.mark.parametrize(
    ("canary", "threshold"),
    [(0, 0), (0.01, 1), (12.5, 1250), (25, 2500), (33.33, 3333), (99.99, 9999), (100, 10_000)],
)
def test_canary_threshold_is_canary_times_100_rounded(canary: float, threshold: int):
    """A canary of c percent covers round(c * 100) of the 10 000 buckets."""
    assert canary_threshold(canary) == threshold


def _inside(salt: str, key: str, canary: float) -> bool:
    return bucket_for(salt + ":", key) < canary_threshold(canary)


CANARIES = st.integers(min_value=0, max_value=10_000).map(lambda n: n / 100)


@settings(max_examples=300, deadline=None)
@given(key=st.text(max_size=40), low=CANARIES, high=CANARIES)
def test_raising_the_canary_only_adds_keys(key: str, low: float, high: float):
    """Monotone: a key inside a canary c is inside every canary c' >= c."""
    low, high = min(low, high), max(low, high)
    if _inside("s:v1", key, low):
        assert _inside("s:v1", key, high)


@settings(max_examples=100, deadline=None)
@given(key=st.text(max_size=40))
def test_canary_0_holds_no_key_and_100_every_key(key: str):
    """No key is inside a canary of 0 and every key is inside a canary of 100."""
    assert not _inside("s:v1", key, 0)
    assert _inside("s:v1", key, 100)


def _random_keys(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "-_.:/éü東"
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 24))) for _ in range(count)]


@pytest.mark.parametrize("canary", [0.5, 1, 10, 12.5, 25, 33.33, 50, 75, 99])
def test_share_inside_the_canary_is_within_one_point(canary: float):
    """Over 100 000 random keys the share inside the canary is within ±1 point of the canary."""
    keys = _random_keys(int(canary * 100), 100_000)
    threshold = round(canary * 100)
    inside = sum(1 for key in keys if bucket_for("telemetry.FeedbackEvent:v2:", key) < threshold)
    assert abs(inside / len(keys) * 100 - canary) <= 1.0


def test_different_salts_decorrelate_canaries():
    """With another salt a different set of keys falls inside the same canary."""
    keys = _random_keys(7, 20_000)
    first = {k for k in keys if _inside("salt-a", k, 25)}
    second = {k for k in keys if _inside("salt-b", k, 25)}
    # Independent 25% samples overlap on about 25% of either; identical sets would be 100%.
    assert abs(len(first & second) / len(first) - 0.25) < 0.03


_CHILD = """
import json, sys
from policy_engine.core.bucket import bucket_for
keys = json.loads(sys.stdin.read())
print(json.dumps([bucket_for("telemetry.FeedbackEvent:v2:", k) for k in keys]))
"""


def test_buckets_are_the_same_in_another_process():
    """A process with a different PYTHONHASHSEED computes the same buckets for 200 keys."""
    keys = [*_random_keys(42, 195), "", "Zürich", "東京", "🦀", "p-42"]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    theirs = json.loads(result.stdout)
    assert len(theirs) == 200
    assert theirs == [bucket_for("telemetry.FeedbackEvent:v2:", k) for k in keys]
    assert theirs == [reference_bucket("telemetry.FeedbackEvent:v2", k) for k in keys]


# --------------------------------------------------------------------------- keys without a key


def test_canonical_json_is_compact_sorted_and_unescaped():
    """Canonical JSON sorts keys, uses "," and ":" with no spaces, and keeps non-ASCII as is."""
    assert canonical_json({"b": 1, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'
    assert canonical_json(42) == "42"
    assert canonical_json(True) == "true"


def test_payload_hash_key_is_sha256_of_canonical_json():
    """A payload without a key is keyed by the first 32 hex digits of sha256(canonical JSON)."""
    import hashlib

    payload = {"z": 1, "a": {"y": "ü", "x": [1, 2]}}
    text = '{"a":{"x":[1,2],"y":"ü"},"z":1}'
    assert payload_hash_key(payload) == hashlib.sha256(text.encode()).hexdigest()[:32]
    assert payload_hash_key({"a": {"x": [1, 2], "y": "ü"}, "z": 1}) == payload_hash_key(payload)


def test_payload_hash_key_survives_a_payload_that_is_not_json():
    """A payload JSON cannot write (a set, a 5 000-digit integer) still gets a stable 32-digit
    key instead of an error, the same for the same payload and another for another payload."""
    first = payload_hash_key({"a": {1, 2}, "n": 10**5000})
    assert first == payload_hash_key({"n": 10**5000, "a": {1, 2}})
    assert first != payload_hash_key({"b": {3}, "n": 10**5000})
    assert re.fullmatch(r"[0-9a-f]{32}", first)


# --------------------------------------------------------------------------- published vectors


def _doc_vectors() -> list[dict[str, str]]:
    """The rows of the test-vector table in docs/bucketing.md, by column header."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| salt |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _json_cell(cell: str) -> str:
    value = json.loads(cell.strip("`"))
    assert isinstance(value, str)
    return value


def test_docs_publish_at_least_12_vectors_with_an_empty_and_a_non_ascii_key():
    """docs/bucketing.md publishes ≥ 12 vectors, among them an empty and a non-ASCII key."""
    keys = [_json_cell(row["key"]) for row in _doc_vectors()]
    assert len(keys) >= 12
    assert "" in keys
    assert any(not k.isascii() for k in keys)


@pytest.mark.parametrize("row", _doc_vectors(), ids=lambda r: r["key"])
def test_published_vector_matches_the_engine_and_mmh3(row: dict[str, str]):
    """Each published vector (hash, bucket, in/out at 25%) is what mmh3 and ``bucket_for`` give."""
    salt, key = _json_cell(row["salt"]), _json_cell(row["key"])
    unsigned = int(row["murmur3 (unsigned)"])
    bucket = int(row["bucket"])
    assert mmh3.hash(salt + ":" + key, 0, signed=False) == unsigned
    assert murmur3_x86_32((salt + ":" + key).encode()) == unsigned
    assert (unsigned * 10_000) >> 32 == bucket
    assert bucket_for(salt + ":", key) == bucket
    assert row["canary 25"] == ("in" if bucket < 2500 else "out")
