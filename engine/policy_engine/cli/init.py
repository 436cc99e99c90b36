"""``policy-engine init [DIR]``: a starter project that passes ``check`` and ``test``.

Writes, under DIR (default: the current directory):

- ``policies/shop.yaml``: one schema with a warn track and a strict 10 % canary, commented, its
  first line pointing yaml-language-server at the format's JSON Schema;
- ``policy.schema.json``: that JSON Schema, as ``policy-engine schema`` prints it. It is written
  into the project rather than referenced by URL so the editor checks against exactly the format
  of the installed version, offline too; ``policy-engine schema > policy.schema.json`` refreshes
  it after an upgrade;
- ``schemas/shop.OrderPlaced/v1.json`` and ``v2.json``: the embedded registry;
- ``tests/policies/shop.test.yaml`` and a payload file: cases ``policy-engine test`` runs.

Nothing is overwritten: if any of these files exists, nothing is written and the exit code is 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Final

from policy_engine.cli.common import EXIT_OK, EXIT_USAGE, Streams, add_common, write_json

#: Where the policy format's JSON Schema is written, relative to DIR.
SCHEMA_FILE: Final = "policy.schema.json"

POLICY: Final = """\
# yaml-language-server: $schema=../policy.schema.json
# A starter policy (format version 1): shop.OrderPlaced v1 is validated in warn mode, v2 is
# strict for a 10 % canary of customers. `policy-engine check` lints this file,
# `policy-engine explain shop.OrderPlaced --key c-1002` shows what one customer gets, and
# tests/policies/shop.test.yaml pins the behaviour (`policy-engine test`).
version: 1

defaults:  # inherited by every rule in this file unless the rule says otherwise
  mode: warn  # validate; log and count failures, never reject
  key: customer_id  # the payload field whose value decides, stably, who is inside a canary

schemas:
  shop.OrderPlaced:  # an exact schema name; a glob such as "shop.*" would match many
    # v1 is not listed: it gets the defaults (warn, keyed by customer_id).
    tracks:
      v2:
        mode: strict  # inside the canary an invalid payload is rejected...
        canary: 10  # ...for 10 % of customers; the others get the baseline, warn
        # To move the canary on a schedule, write a ramp instead: the latest step whose `at`
        # has passed sets the canary (steps strictly increasing, times with an offset).
        # ramp:
        #   - {at: 2030-01-01T00:00:00Z, canary: 10}
        #   - {at: 2030-01-15T00:00:00Z, canary: 50}
        #   - {at: 2030-02-01T00:00:00Z, canary: 100}
        # Fall back to warn by itself when, over 10 minutes and at least 500 strict payloads,
        # more than 5 % are rejected; try strict again 30 minutes later.
        guardrail: {max_reject_rate: 0.05, window: 10m, min_samples: 500, cooldown: 30m}
"""

_SCHEMA_V1: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "shop.OrderPlaced v1",
    "description": "An order was placed.",
    "type": "object",
    "required": ["order_id", "customer_id", "total"],
    "properties": {
        "order_id": {"type": "string", "minLength": 1},
        "customer_id": {"type": "string", "minLength": 1},
        "total": {"type": "number", "minimum": 0},
    },
}

_SCHEMA_V2: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "shop.OrderPlaced v2",
    "description": "An order was placed. Stricter than v1: a currency and the items are "
    "required, and unknown properties are refused.",
    "type": "object",
    "required": ["order_id", "customer_id", "currency", "total", "items"],
    "additionalProperties": False,
    "properties": {
        "order_id": {"type": "string", "minLength": 1},
        "customer_id": {"type": "string", "pattern": "^c-[0-9]+$"},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "total": {"type": "number", "exclusiveMinimum": 0},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["sku", "quantity"],
                "additionalProperties": False,
                "properties": {
                    "sku": {"type": "string", "minLength": 1},
                    "quantity": {"type": "integer", "minimum": 1},
                },
            },
        },
    },
}

_BAD_ORDER: Final[dict[str, Any]] = {
    "order_id": "o-2",
    "customer_id": "c-1002",
    "total": 30.0,
    "items": [{"sku": "MUG-1", "quantity": 2}],
}

TESTS: Final = """\
# Policy tests: each case evaluates one payload with the policies and the registry, and says
# what must come out (any of mode, action, valid, in_canary). `policy-engine test` runs every
# *.test.yaml under tests/policies; `--junit report.xml` writes a report for CI.
version: 1
cases:
  - name: a valid v2 order is accepted
    schema: shop.OrderPlaced
    track: v2
    payload:
      order_id: o-1
      customer_id: c-1002
      currency: EUR
      total: 12.5
      items: [{sku: MUG-1, quantity: 1}]
    expect: {valid: true, action: accepted}

  - name: customer c-1002 is inside the 10 % canary, so a v2 order without currency is rejected
    schema: shop.OrderPlaced
    track: v2
    payload_file: payloads/order-without-currency.json  # relative to this file
    expect: {in_canary: true, mode: strict, valid: false, action: rejected}

  - name: customer c-1001 is outside the canary, so the same mistake is only logged
    schema: shop.OrderPlaced
    track: v2
    key: c-1001  # the key decides the bucket, whatever the payload's customer_id says
    payload_file: payloads/order-without-currency.json
    expect: {in_canary: false, mode: warn, action: logged}

  - name: v1 is validated in warn mode for everyone
    schema: shop.OrderPlaced
    track: v1
    at: 2030-01-01T00:00:00Z  # optional: the time the case is evaluated at (default: now)
    payload: {order_id: o-3, customer_id: c-1002}
    expect: {mode: warn, valid: false, action: logged}
"""


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def starter_files() -> dict[str, str]:
    """The starter project: path relative to DIR -> text."""
    from policy_engine.policy.model import policy_json_schema  # pydantic: only when used

    return {
        SCHEMA_FILE: _json(policy_json_schema()),
        "policies/shop.yaml": POLICY,
        "schemas/shop.OrderPlaced/v1.json": _json(_SCHEMA_V1),
        "schemas/shop.OrderPlaced/v2.json": _json(_SCHEMA_V2),
        "tests/policies/shop.test.yaml": TESTS,
        "tests/policies/payloads/order-without-currency.json": _json(_BAD_ORDER),
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``init`` to the command line."""
    init = sub.add_parser(
        "init",
        help="write a starter project: policies, schemas and policy tests",
        description="Write a starter project into DIR: policies/ (with the line that makes "
        "editors validate policy files as you type), the format's JSON Schema, an embedded "
        "registry in schemas/, and policy tests in tests/policies/. 'policy-engine check' and "
        "'policy-engine test' pass when run in DIR. Nothing is overwritten: if any of the "
        "files exists, nothing is written and the exit code is 2. --policies and --registry "
        "are accepted like on every command and not used.",
    )
    init.add_argument(
        "dir",
        nargs="?",
        default=".",
        metavar="DIR",
        help="the project directory, created if missing (default: the current directory)",
    )
    add_common(init)
    init.set_defaults(run=run_init)


def run_init(args: argparse.Namespace, streams: Streams) -> int:
    """Write the starter project, or nothing when a file is in the way."""
    root = Path(args.dir)
    files = starter_files()
    if root.exists() and not root.is_dir():
        streams.stderr.write(f"policy-engine init: {root} exists and is not a directory\n")
        return EXIT_USAGE
    in_the_way = [name for name in files if (root / name).exists() or (root / name).is_symlink()]
    if in_the_way:
        for name in in_the_way:
            streams.stderr.write(f"policy-engine init: {root / name} already exists\n")
        streams.stderr.write("policy-engine init: nothing written\n")
        return EXIT_USAGE
    written = []
    try:
        for name, text in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as handle:  # "x": never overwrite
                handle.write(text)
            written.append(str(path))
    except OSError as exc:
        streams.stderr.write(f"policy-engine init: cannot write: {exc}\n")
        return EXIT_USAGE
    if args.json:
        write_json(streams.stdout, {"dir": str(root), "created": written})
        return EXIT_OK
    for name in written:
        streams.stdout.write(f"created {name}\n")
    go = "" if root == Path() else f"cd {root} && "
    streams.stdout.write(
        f"next: {go}policy-engine check && policy-engine test\n"
        "      (and 'policy-engine explain shop.OrderPlaced --key c-1002' to see why)\n"
    )
    return EXIT_OK


__all__ = ["POLICY", "SCHEMA_FILE", "TESTS", "register", "run_init", "starter_files"]
