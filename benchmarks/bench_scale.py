"""Replicas of ``policy-engine consume`` on one Redis stream: messages per second, the DLQ with and
without the shared guardrail store, the store's cost, and the floor a bare redis-py loop sets.

Run (from the repository root; ``redis-server`` on PATH)::

    python benchmarks/bench_scale.py [--messages 50000] [--rounds 3] [--batch 500]

What is measured, on a ``redis-server`` of the script's own (a free port on loopback, no
persistence, killed at the end; other traffic on a shared Redis cannot touch the figures):

- **consume, 1, 2 and 3 replicas**: ``policy-engine consume --drain`` processes, one consumer
  group, on one stream of ``--messages`` envelopes (``examples/feed.jsonl`` cycled, its bad lines
  included), passed on to an output stream, dead letters to a DLQ stream; each with and without
  ``GUARDRAIL_STORE`` (on the same server). The replicas are started before the round and wait
  in ``XREADGROUP`` on a group that has nothing for them; the timed part starts when the group is
  moved back to the stream's start (``XGROUP SETID 0``) and the last message is added, which
  wakes them all at once, and ends when the group has delivered and acknowledged every message
  (``XINFO GROUPS``, polled every 10 ms). Start-up (imports, loading policies) is not timed; the
  replicas are then let go (``CLIENT UNBLOCK``) and end as ``--drain`` does.
- **the floor**: the same I/O in a bare redis-py loop in this process (``XREADGROUP COUNT 500``,
  parse the envelope, add a small decision, ``XADD`` each message and ``XACK`` the batch in one
  pipeline), with hiredis and with redis-py's own parser (``parser_class``).
- **the DLQ**: the policy, written by the script, makes ``marketdata.TradeEvent`` strict with a
  guardrail that trips on this feed (about 3 % of its payloads are invalid; over 1 % among at
  least ``MIN_SAMPLES`` strict payloads trips it); every other schema is warn. Each replica
  without the store trips on its own window; with it, the fleet trips once.

All configurations take turns within each round (``common.measure``: a warm-up round each, then
interleaved rounds with a rotating start), so load from elsewhere on a shared machine hits them
alike; the median round is shown, with the range of the rounds. Beside the wall-clock figures,
the CPU time each message cost (the replicas' processes, or this process for the floor, and the
Redis server), over the same timed part: on a machine busy with other work the throughput moves
with that work, the CPU cost per message hardly does. Figures only: no target decides the exit
code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import redis
from redis._parsers import _HiredisParser, _RESP3Parser
from redis.utils import HIREDIS_AVAILABLE

from common import ROOT, Case, header, load, measure, paired_ratios, rounds_case

GROUP = "bench"
REPLICAS = (1, 2, 3)
#: Strict payloads a guardrail counts before it may trip (per process, or per fleet with the
#: store); TradeEvent is about 60 % of the feed, so it trips after about 3 500 messages.
MIN_SAMPLES = 2000
#: Keys as the example policies take them (a payload field), so no payload is hashed whole to
#: find its bucket.
POLICY = f"""\
version: 1
defaults:
  key: producer_id
schemas:
  "*":
    mode: warn
  telemetry.FeedbackEvent:
    mode: warn
    tracks:
      v2: {{key: source.id}}
  marketdata.TradeEvent:
    mode: strict
    canary: 100
    key: symbol
    guardrail: {{max_reject_rate: 0.01, min_samples: {MIN_SAMPLES}, window: 10m, cooldown: 1h}}
"""
#: How often the end of a round is looked for (the timing's resolution: 1 % of a 1 s round).
POLL = 0.01
#: Polls before a round is declared stuck (10 minutes).
MAX_POLLS = 60_000
#: A replica's blocking read; it never runs out during a round (replicas are let go at its end).
BLOCK_MS = 600_000


# ---------------------------------------------------------------------------------------------
# The stream, the server
# ---------------------------------------------------------------------------------------------


def feed_lines(count: int) -> list[bytes]:
    """``count`` lines of ``examples/feed.jsonl`` (every line, bad ones too), cycled."""
    lines = [line for line in (ROOT / "examples" / "feed.jsonl").read_bytes().splitlines() if line]
    return [lines[i % len(lines)] for i in range(count)]


def fill(client: redis.Redis, stream: str, lines: Sequence[bytes]) -> None:
    """``XADD`` every line as an entry's ``data`` field, 1 000 per pipelined round trip."""
    for i in range(0, len(lines), 1000):
        pipe = client.pipeline(transaction=False)
        for line in lines[i : i + 1000]:
            pipe.xadd(stream, {b"data": line})
        pipe.execute()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Spent:
    """CPU seconds one timed round cost: the client side (this process or the replicas) and
    the Redis server."""

    client: float
    server: float


def free_port() -> int:
    """A TCP port nothing listens on right now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OwnRedis:
    """A ``redis-server`` of the benchmark's own: a free port, loopback, no persistence."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port)
        for _ in range(500):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise SystemExit(f"redis-server on port {self.port} did not start")

    def cpu_seconds(self) -> float:
        """The server's CPU time so far (user + system)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def stop(self) -> None:
        """Stop the server and wait for it."""
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


# ---------------------------------------------------------------------------------------------
# The floor: a bare redis-py loop doing the same I/O
# ---------------------------------------------------------------------------------------------


def bare_loop(client: redis.Redis, source: str, output: str, dlq: str, batch: int) -> int:
    """Consume ``source`` as one consumer of ``GROUP`` until it has nothing new: for each
    entry parse the envelope, add a small decision (bad JSON: to ``dlq``), ``XADD`` it, and
    ``XACK`` the batch, the writes and the acknowledgement in one pipeline. Messages moved."""
    moved = 0
    while True:
        reply = client.xreadgroup(GROUP, "floor", {source: ">"}, count=batch)
        if not reply:
            return moved
        entries = reply[0][1]
        pipe = client.pipeline(transaction=False)
        ids = []
        for entry_id, fields in entries:
            entry = dict(fields)
            try:
                envelope = json.loads(fields[b"data"])
                small = {"schema": envelope["schema"], "action": "accepted"}
                entry[b"decision"] = json.dumps(small, separators=(",", ":")).encode()
                pipe.xadd(output, entry)
            except (ValueError, KeyError, TypeError):
                entry[b"dlq"] = b'{"reason":"bad_envelope"}'
                pipe.xadd(dlq, entry)
            ids.append(entry_id)
        pipe.xack(source, GROUP, *ids)
        pipe.execute()
        moved += len(entries)


class FloorRounds:
    """Rounds of the bare loop: a fresh stream filled before each (untimed), the loop run."""

    def __init__(self, server: OwnRedis, lines: list[bytes], batch: int, hiredis: bool) -> None:
        self.server, self.lines, self.batch = server, lines, batch
        parser = _HiredisParser if hiredis else _RESP3Parser
        self.client = redis.Redis(
            connection_pool=redis.ConnectionPool(port=server.port, parser_class=parser)
        )
        self.keys = ("floor:src", "floor:out", "floor:dlq")
        self.moved = 0
        #: CPU spent by each round (the warm-up round first).
        self.spent: list[Spent] = []

    def setup(self) -> None:
        """A fresh source stream and its group at the start."""
        self.server.client.delete(*self.keys)
        fill(self.server.client, self.keys[0], self.lines)
        self.server.client.xgroup_create(self.keys[0], GROUP, id="0")

    def run(self, items: Sequence[Any]) -> None:
        """The timed part: the loop over the whole stream."""
        client, server = time.process_time(), self.server.cpu_seconds()
        self.moved = bare_loop(self.client, *self.keys, self.batch)
        self.spent.append(Spent(time.process_time() - client, self.server.cpu_seconds() - server))

    def teardown(self) -> None:
        """Check that every message moved; delete the streams."""
        self.server.client.delete(*self.keys)
        if self.moved != len(self.lines):
            raise SystemExit(f"the floor moved {self.moved} of {len(self.lines)} messages")

    def case(self, name: str) -> Case:
        """The rounds as a ``common.Case``: nanoseconds per message."""
        return rounds_case(name, self, self.lines)


# ---------------------------------------------------------------------------------------------
# consume replicas
# ---------------------------------------------------------------------------------------------


@dataclass
class Replica:
    """One ``policy-engine consume --drain --json`` process; its log goes to a file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    def finish(self) -> dict[str, Any]:
        """Its ``--json`` summary once it exited (``SystemExit`` with its log if it failed)."""
        out, _ = self.process.communicate(timeout=300)
        self.log_file.close()
        if self.process.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:]
            raise SystemExit(f"a replica exited {self.process.returncode}:\n{log}")
        summary: dict[str, Any] = json.loads(out)
        return summary

    def kill(self) -> None:
        """Kill it if it still runs (clean-up after a failure)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=60)
        self.log_file.close()


@dataclass
class Outcome:
    """What one round of replicas did: the DLQ's length and each replica's summary."""

    dlq: int
    rejected: int
    read: list[int]


class FleetRounds:
    """Rounds of ``replicas`` consume processes (see the module docstring for the protocol)."""

    def __init__(
        self,
        server: OwnRedis,
        lines: list[bytes],
        batch: int,
        replicas: int,
        store: bool,
        policies: Path,
        logs: Path,
    ) -> None:
        self.server, self.lines, self.batch = server, lines, batch
        self.replicas, self.store, self.policies, self.logs = replicas, store, policies, logs
        tag = f"r{replicas}{'s' if store else ''}"
        self.source, self.output, self.dlq = f"{tag}:src", f"{tag}:out", f"{tag}:dlq"
        self.prefix = f"{tag}:guardrail:"
        self.running: list[Replica] = []
        self.last_id = b""
        #: What each round did, and the CPU it cost (the warm-up round first).
        self.outcomes: list[Outcome] = []
        self.spent: list[Spent] = []

    def _command(self, number: int) -> list[str]:
        url = self.server.url
        return [
            sys.executable, "-m", "policy_engine", "consume",
            f"{url}?stream={self.source}&group={GROUP}&block_ms={BLOCK_MS}",
            "--consumer", f"c{number}",
            "--output", f"{url}?stream={self.output}",
            "--dlq", f"{url}?stream={self.dlq}",
            "--drain", "--batch-size", str(self.batch),
            "--policies", str(self.policies), "--registry", str(ROOT / "schemas"),
            "--log-level", "error", "--json",
        ]  # fmt: skip

    def setup(self) -> None:
        """Fill the stream (all but its last message), put the group past its end, start the
        replicas and wait until each one waits in ``XREADGROUP``."""
        client = self.server.client
        self._delete()
        fill(client, self.source, self.lines[:-1])
        client.xgroup_create(self.source, GROUP, id="$")
        environ = {
            k: v for k, v in os.environ.items() if k not in ("GUARDRAIL_STORE", "METRICS_PORT")
        }
        environ["POLICY_WATCH"] = "false"
        if self.store:
            environ["GUARDRAIL_STORE"] = f"{self.server.url}?prefix={self.prefix}"
        for number in range(self.replicas):
            log_path = self.logs / f"{self.source}-{number}.log"
            log_file = open(log_path, "wb")  # noqa: SIM115 - closed by Replica.finish/kill
            process = subprocess.Popen(
                self._command(number), stdout=subprocess.PIPE, stderr=log_file, env=environ
            )
            self.running.append(Replica(process, log_path, log_file))
        self._wait(lambda: self._blocked() >= self.replicas, "the replicas to start")

    def _blocked(self) -> int:
        """Clients waiting in XREADGROUP (on this server, only the round's replicas)."""
        clients = self.server.client.client_list()
        return sum(1 for c in clients if c.get("cmd") == "xreadgroup" and "b" in c["flags"])

    def _wait(self, done: Any, what: str) -> None:
        for _ in range(MAX_POLLS):
            if done():
                return
            for replica in self.running:
                if replica.process.poll() is not None:
                    replica.finish()  # raises with its log
                    raise SystemExit(f"a replica ended while waiting for {what}")
            time.sleep(POLL)
        raise SystemExit(f"gave up waiting for {what}")

    def _consumed(self) -> bool:
        info = self.server.client.xinfo_groups(self.source)[0]
        return info["last-delivered-id"] == self.last_id and info["pending"] == 0

    def run(self, items: Sequence[Any]) -> None:
        """The timed part: wake the replicas and wait until every message is acknowledged."""
        client = self.server.client
        pids = [replica.process.pid for replica in self.running]
        replicas, server = sum(map(process_cpu, pids)), self.server.cpu_seconds()
        client.xgroup_setid(self.source, GROUP, "0")
        self.last_id = client.xadd(self.source, {b"data": self.lines[-1]})
        self._wait(self._consumed, "the stream to be consumed")
        self.spent.append(
            Spent(sum(map(process_cpu, pids)) - replicas, self.server.cpu_seconds() - server)
        )

    def teardown(self) -> None:
        """Let the replicas go (they end as ``--drain`` does), keep what they did, clean up."""
        client = self.server.client
        try:
            while any(replica.process.poll() is None for replica in self.running):
                for info in client.client_list():
                    if info.get("cmd") == "xreadgroup" and "b" in info["flags"]:
                        client.client_unblock(int(info["id"]))
                time.sleep(POLL)
            summaries = [replica.finish() for replica in self.running]
        finally:
            for replica in self.running:
                replica.kill()
            self.running = []
        read = [summary["read"] for summary in summaries]
        if sum(read) != len(self.lines):
            raise SystemExit(f"the replicas read {sum(read)} of {len(self.lines)} messages")
        rejected = sum(s["dead_letter_reasons"].get("rejected", 0) for s in summaries)
        self.outcomes.append(Outcome(client.xlen(self.dlq), rejected, read))
        self._delete()

    def _delete(self) -> None:
        client = self.server.client
        keys = [self.source, self.output, self.dlq, *client.scan_iter(f"{self.prefix}*")]
        client.delete(*keys)

    def case(self) -> Case:
        """The rounds as a ``common.Case``: nanoseconds per message."""
        return rounds_case(
            f"{self.replicas} replica(s), store {'on' if self.store else 'off'}", self, self.lines
        )


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def rate(case: Case) -> str:
    """A case's median messages per second and the range of its rounds."""
    low, high = 1e9 / case.maximum, 1e9 / case.minimum
    return f"{1e9 / case.median:>8,.0f} ({low:,.0f}-{high:,.0f})"


def share(ratios: Sequence[float]) -> str:
    """The median of per-round ratios as a percentage, with their range."""
    return f"{statistics.median(ratios):.0%} (rounds {min(ratios):.0%} to {max(ratios):.0%})"


def per_message(spent: Sequence[Spent], messages: int) -> tuple[float, float]:
    """The median CPU microseconds per message: the client side's, the server's."""
    return (
        statistics.median(s.client for s in spent) / messages * 1e6,
        statistics.median(s.server for s in spent) / messages * 1e6,
    )


def installed(name: str) -> str:
    """A distribution's version, or ``not installed``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main() -> int:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the median is shown)")
    parser.add_argument("--batch", type=int, default=500, help="consume --batch-size (500)")
    parser.add_argument("--redis-server", default="redis-server", help="the server binary")
    args = parser.parse_args()
    binary = shutil.which(args.redis_server)
    if binary is None:
        raise SystemExit(f"{args.redis_server} not found")

    lines = feed_lines(args.messages)
    count = len(lines)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        policies = work / "policies"
        policies.mkdir()
        (policies / "bench.yaml").write_text(POLICY, encoding="utf-8")
        server = OwnRedis(binary, work)
        try:
            redis_version = server.client.info("server")["redis_version"]
            print(
                header(
                    f"consume scaling: {count:,} messages (examples/feed.jsonl cycled), batch "
                    f"{args.batch}, {args.rounds} rounds"
                )
            )
            print(
                f"redis-py {redis.__version__} (hiredis {installed('hiredis')}, "
                f"{'used' if HIREDIS_AVAILABLE else 'not used'} by consume), "
                f"orjson {installed('orjson')}, Redis {redis_version} (own server, port "
                f"{server.port})",
                flush=True,
            )
            started_load = load()
            floors = {
                hiredis: FloorRounds(server, lines, args.batch, hiredis)
                for hiredis in (True, False)
            }
            fleets = {
                (replicas, store): FleetRounds(
                    server, lines, args.batch, replicas, store, policies, work
                )
                for store in (False, True)
                for replicas in REPLICAS
            }
            floor_cases = {
                hiredis: rounds.case(f"floor {hiredis}") for hiredis, rounds in floors.items()
            }
            cases = {key: fleet.case() for key, fleet in fleets.items()}
            measure([*floor_cases.values(), *cases.values()], args.rounds)
        finally:
            server.stop()

    timed = slice(1, None)  # every round but measure's warm-up round
    print(
        f"\nthe floor: a bare redis-py loop (XREADGROUP {args.batch}, json, a small decision, "
        "XADD + XACK in one pipeline)"
    )
    print(f"{'':<28}{'msg/s (rounds)':>26}{'CPU us/msg: loop':>20}{'Redis':>7}")
    for hiredis, case in floor_cases.items():
        label = "with hiredis" if hiredis else "with redis-py's parser"
        loop_cpu, redis_cpu = per_message(floors[hiredis].spent[timed], count)
        print(f"  {label:<26}{rate(case):>26}{loop_cpu:>20.1f}{redis_cpu:>7.1f}")

    print(f"\nconsume --drain, one consumer group, --batch-size {args.batch}")
    print(
        f"{'':<28}{'msg/s (rounds)':>26}{'per replica':>12}{'CPU us/msg: replicas':>22}"
        f"{'Redis':>7}{'DLQ':>6}{'rejected':>10}"
    )
    for (replicas, store), fleet in fleets.items():
        case = cases[(replicas, store)]
        replica_cpu, redis_cpu = per_message(fleet.spent[timed], count)
        dlq = statistics.median(o.dlq for o in fleet.outcomes[timed])
        rejected = statistics.median(o.rejected for o in fleet.outcomes[timed])
        label = f"{replicas} replica{'s' if replicas > 1 else ''}, store {'on' if store else 'off'}"
        print(
            f"  {label:<26}{rate(case):>26}{1e9 / case.median / replicas:>12,.0f}"
            f"{replica_cpu:>22.1f}{redis_cpu:>7.1f}{dlq:>6,.0f}{rejected:>10,.0f}"
        )

    one = cases[(1, False)]
    one_cpu = per_message(fleets[(1, False)].spent[timed], count)[0]
    print("\none replica against the floor: throughput (per-round ratios), CPU per message")
    for hiredis, floor in floor_cases.items():
        label = "with hiredis" if hiredis else "with redis-py's parser"
        floor_cpu = per_message(floors[hiredis].spent[timed], count)[0]
        # Time per message: floor / consume is consume's throughput over the floor's.
        ratios = paired_ratios(floor, one)
        print(f"  floor {label:<26}{share(ratios):<34}{floor_cpu / one_cpu:>6.0%}")
    print("the shared store's cost: throughput lost (per-round pairs), CPU per message added")
    for replicas in REPLICAS:
        on, off = fleets[(replicas, True)], fleets[(replicas, False)]
        lost = [1 - 1 / r for r in paired_ratios(cases[(replicas, True)], cases[(replicas, False)])]
        cpu_on, cpu_off = per_message(on.spent[timed], count), per_message(off.spent[timed], count)
        label = f"{replicas} replica{'s' if replicas > 1 else ''}"
        print(
            f"  {label:<32}{share(lost):<34}{cpu_on[0] / cpu_off[0] - 1:>+6.1%} replicas, "
            f"{cpu_on[1] / cpu_off[1] - 1:+.1%} Redis"
        )
    single = statistics.median(o.dlq for o in fleets[(1, False)].outcomes[timed])
    print(f"DLQ against one replica's ({single:,.0f}); the target: within one batch per replica")
    for replicas in REPLICAS[1:]:
        for store in (False, True):
            dlq = statistics.median(o.dlq for o in fleets[(replicas, store)].outcomes[timed])
            print(
                f"  {replicas} replicas, store {'on ' if store else 'off'}{'':<16}"
                f"{dlq - single:>+6,.0f}   (one batch per replica: {replicas * args.batch:,})"
            )
    print(f"machine: {started_load} at the start, {load()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
