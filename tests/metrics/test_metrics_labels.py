"""Label folding: unknown schemas and tracks, JSON Pointer paths, and the per-series path cap."""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any

import pytest
from metrics_support import INVALID, ORDER, VALID

from policy_engine.errors import RegistryUnavailableError, SchemaNotFoundError
from policy_engine.metrics import MAX_PATHS_PER_SERIES, FastEngineMetrics, fold_path
from policy_engine.sources import SchemaDocument

VALIDATIONS = "schema_validations_total"
VIOLATIONS = "schema_violations_total"


def label_sets(registry: Any, family: str) -> set[tuple[tuple[str, str], ...]]:
    """Every label set the registry exposes for ``family``'s samples."""
    return {
        tuple(sorted(sample.labels.items()))
        for metric in registry.collect()
        if metric.name == family
        for sample in metric.samples
    }


def test_ten_thousand_random_schema_names_stay_bounded(make_engine, registry, value):
    """10 000 invented schema names (and tracks) end up in a handful of label sets."""
    eng = make_engine()
    rng = random.Random(5)
    for n in range(10_000):
        name = "x." + "".join(rng.choices(string.ascii_letters, k=12))
        track = "v1" if n % 2 else "t" + "".join(rng.choices(string.digits, k=6))
        eng.evaluate(name, VALID, track=track)
    sets = label_sets(registry, "schema_validations")
    assert len(sets) <= 2
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 5_000
    assert value(VALIDATIONS, "unknown", "unknown", "warn", "skipped") == 5_000
    for family in ("schema_validation_failures", "schema_enforcement_actions"):
        assert len(label_sets(registry, family)) <= 2
    hook = eng.metrics
    assert isinstance(hook, FastEngineMetrics)
    assert all(len(shard.names) < 10 for shard in hook._shards)  # invented names not cached
    assert all(len(shard.cells) <= 2 for shard in hook._shards)


def test_known_schema_with_an_invented_track_folds_the_track(make_engine, value):
    """A known schema on a track nobody has is counted as track=unknown."""
    eng = make_engine()
    eng.evaluate("shop.Order", VALID, track="v9000")
    assert value(VALIDATIONS, "shop.Order", "unknown", "warn", "skipped") == 1


def test_exact_policy_names_are_known_without_the_registry(make_engine, value):
    """A name written exactly in the policies keeps its label even with no schema anywhere."""
    eng = make_engine()
    eng.evaluate("shop.Gone", VALID, track="v2")
    assert value(VALIDATIONS, "shop.Gone", "v2", "strict", "rejected") == 1


def test_glob_matches_alone_do_not_make_a_name_known(make_engine, value):
    """A name only a glob matches, unknown to the registry, is still folded to unknown."""
    eng = make_engine(
        'version: 1\nschemas:\n  "shop.*":\n    mode: warn\n  shop.Order:\n    mode: warn\n'
    )
    eng.evaluate("shop.Invented", VALID, track="v1")
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 1


def test_a_reload_that_names_a_schema_makes_it_known(make_engine, policy_dir, value):
    """Known names are refreshed on reload: a name the new policy writes gets its own label."""
    eng = make_engine()
    eng.evaluate("shop.Later", VALID, track="v1")
    eng.evaluate("shop.Later", VALID, track="v1")
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 2
    policy = "version: 1\nschemas:\n  shop.Later:\n    mode: warn\n"
    (policy_dir / "rules.yaml").write_text(policy, encoding="utf-8")
    assert eng.reload() is True
    eng.evaluate("shop.Later", VALID, track="v1")
    assert value(VALIDATIONS, "shop.Later", "v1", "warn", "skipped") == 1
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 2


class UnlistedSource:
    """A registry that serves shop.Hidden but does not list it (a listing that lags)."""

    description = "unlisted"

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """Serve ORDER for shop.Hidden v1 only."""
        if (schema, track) != ("shop.Hidden", "v1"):
            raise SchemaNotFoundError("no", schema=schema, track=track)
        return SchemaDocument(schema=schema, track=track, version="1", document=ORDER)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """Lists nothing."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


def test_a_schema_the_registry_serves_is_known_even_if_unlisted(make_engine, value):
    """A name the registry served a schema for keeps its label, whatever the listing says."""
    eng = make_engine(source=UnlistedSource())
    eng.evaluate("shop.Hidden", INVALID, track="v1")
    eng.evaluate("shop.Hidden", VALID, track="v1")
    assert value(VALIDATIONS, "shop.Hidden", "v1", "warn", "logged") == 1
    assert value(VALIDATIONS, "shop.Hidden", "v1", "warn", "accepted") == 1


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("", "(root)"),
        ("/price", "/price"),
        ("/lines/3/sku", "/lines/*/sku"),
        ("/bars/0/close", "/bars/*/close"),
        ("/a/10/b/200", "/a/*/b/*"),
        ("/3", "/*"),
        ("/lines/03/sku", "/lines/03/sku"),  # "03" is not an array index in a JSON Pointer
        ("/v2x/1a", "/v2x/1a"),
    ],
)
def test_fold_path(path, label):
    """Array indices fold to ``*``, the root is ``(root)``, other segments stay."""
    assert fold_path(path) == label


def test_fold_path_cuts_long_keys():
    """A producer's 10 000-character key does not become a 10 000-character label."""
    label = fold_path("/" + "k" * 10_000)
    assert len(label) == 200
    assert label.endswith("…")


def test_violations_fold_array_indices(make_engine, value):
    """Violations at /lines/0/sku and /lines/7/sku count under one path /lines/*/sku."""
    eng = make_engine()
    lines = [{"sku": "lower"} if i in (0, 7) else {"sku": "OK"} for i in range(8)]
    eng.evaluate("shop.Order", {"id": "o", "price": 1, "lines": lines}, track="v1")
    assert value(VIOLATIONS, "shop.Order", "v1", "pattern", "/lines/*/sku") == 2


def test_at_most_fifty_paths_per_series_then_other(make_engine, registry, value):
    """Past 50 distinct paths per (schema, track) violations count as path=other."""
    eng = make_engine()
    for first in range(0, 60, 20):  # at most 20 violations per payload
        payload = {"id": "o", "price": 1, **{f"k{i:02d}": "s" for i in range(first, first + 20)}}
        eng.evaluate("shop.Order", payload, track="v1")
    paths = {
        dict(labels)["path"]
        for labels in label_sets(registry, "schema_violations")
        if dict(labels)["track"] == "v1"
    }
    assert len(paths) == MAX_PATHS_PER_SERIES + 1
    assert "other" in paths
    assert value(VIOLATIONS, "shop.Order", "v1", "type", "other") == 10
    assert value(VIOLATIONS, "shop.Order", "v1", "type", "/k00") == 1
    # an admitted path keeps counting after the cap; the cap is per (schema, track)
    eng.evaluate("shop.Order", {"id": "o", "price": 1, "k00": "s"}, track="v1")
    eng.evaluate("shop.Order", {"id": "o", "price": 1, "k59": "s"}, track="v2")
    assert value(VIOLATIONS, "shop.Order", "v1", "type", "/k00") == 2
    assert value(VIOLATIONS, "shop.Order", "v2", "type", "/k59") == 1


class FlakyListing:
    """The embedded registry, with a listing that can fail and schemas that can be added."""

    description = "flaky"

    def __init__(self, root) -> None:
        from policy_engine.sources.embedded import DirectorySchemaSource

        self.inner = DirectorySchemaSource(root)
        self.down = False
        self.extra: dict[str, tuple[str, ...]] = {}

    def fetch(self, schema: str, track: str) -> SchemaDocument:
        """Read from the directory."""
        return self.inner.fetch(schema, track)

    def known_schemas(self) -> Mapping[str, tuple[str, ...]]:
        """The directory's listing plus ``extra``, or an outage."""
        if self.down:
            raise RegistryUnavailableError("listing is down")
        return {**self.inner.known_schemas(), **self.extra}

    def close(self) -> None:
        """Nothing to release."""


def test_a_listing_outage_at_reload_keeps_names_known(make_engine, schema_dir, value):
    """When the registry cannot list its schemas during a reload, the last listing is kept."""
    source = FlakyListing(schema_dir)
    source.extra["shop.Listed"] = ("v1",)  # listed, in no policy, never validated here
    eng = make_engine(source=source)
    source.down = True
    assert eng.reload() is False  # unchanged files; the listing failed
    eng.evaluate("shop.Listed", VALID, track="v1")
    assert value(VALIDATIONS, "shop.Listed", "v1", "warn", "skipped") == 1


def test_every_reload_lists_the_registry_again(make_engine, schema_dir, value):
    """A schema added to the registry is known after the next reload, even an unchanged one."""
    source = FlakyListing(schema_dir)
    eng = make_engine(source=source)
    eng.evaluate("shop.Added", VALID, track="v1")  # not listed, not served: unknown
    source.extra["shop.Added"] = ("v1",)
    assert eng.reload() is False
    eng.evaluate("shop.Added", VALID, track="v1")
    assert value(VALIDATIONS, "unknown", "v1", "warn", "skipped") == 1
    assert value(VALIDATIONS, "shop.Added", "v1", "warn", "skipped") == 1
