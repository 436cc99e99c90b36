"""`policy-engine consume` and `redrive`: in-process for results, subprocesses for signals."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loop_support import REDIS_URL, RELAXED, envelope, order

from policy_engine.cli import build_parser, main
from policy_engine.loop import TRANSPORTS, MemorySink, MemoryTransport

REPO = Path(__file__).resolve().parents[2]


def run(args, stdin=b"", env=None):
    """The CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.BytesIO(stdin), stdout=out, stderr=err, environ=env or {})
    return code, out.getvalue(), err.getvalue()


def _common(policy_dir, schema_dir):
    return ["--policies", str(policy_dir), "--registry", str(schema_dir)]


def _feed(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _spawn(args, cwd, stderr=subprocess.PIPE):
    return subprocess.Popen(
        [sys.executable, "-m", "policy_engine", *args],
        cwd=cwd,
        env={**os.environ, "POLICY_WATCH": "false"},
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def _wait_for(predicate, seconds=60.0):
    """Poll ``predicate`` until it holds or a generous ``seconds`` pass (a loaded machine starts
    a subprocess slowly); whether it held."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def _metrics(port):
    """The text of /metrics on ``port``, or "" while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""


def test_consume_file_writes_output_dlq_and_summary(tmp_path, policy_dir, schema_dir):
    """consume FILE --output --dlq: passed lines and dead letters in their files, a summary."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1), order(2, valid=False), b"oops", order(4)])
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    code, stdout, _ = run(
        [
            "consume",
            str(feed),
            "--output",
            str(out),
            "--dlq",
            str(dlq),
            *_common(policy_dir, schema_dir),
        ]
    )
    assert code == 0
    assert len(out.read_bytes().splitlines()) == 2
    reasons = [json.loads(x)["reason"] for x in dlq.read_bytes().splitlines()]
    assert reasons == ["rejected", "bad_envelope"]
    assert "4 read, 2 passed on" in stdout
    assert "2 dead-lettered (bad_envelope 1, rejected 1)" in stdout
    assert "ended by end" in stdout


def test_consume_json_summary(tmp_path, policy_dir, schema_dir):
    """--json prints the summary as one object."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1), order(2, valid=False)])
    code, stdout, _ = run(
        [
            "consume",
            str(feed),
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--json",
            *_common(policy_dir, schema_dir),
        ]
    )
    summary = json.loads(stdout)
    assert code == 0
    assert summary["read"] == 2
    assert summary["acknowledged"] == 2
    assert summary["dead_letter_reasons"] == {"rejected": 1}
    assert summary["actions"]["accepted"] == 1
    assert summary["output"] is None


def test_consume_json_counts_rejections_as_actions(tmp_path, policy_dir, schema_dir):
    """--json's actions count what strict mode rejected (dead-lettered), not 0."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1), order(2, valid=False), order(3, valid=False)])
    code, stdout, _ = run(
        [
            "consume",
            str(feed),
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            "--json",
            *_common(policy_dir, schema_dir),
        ]
    )
    summary = json.loads(stdout)
    assert code == 0
    assert summary["actions"] == {"accepted": 1, "logged": 0, "rejected": 2, "skipped": 0}
    assert summary["unacknowledged"] == 0


def test_consume_dead_letters_nan_as_a_bad_envelope_saying_where(tmp_path, policy_dir, schema_dir):
    """A line holding NaN is not JSON: dead-lettered as bad_envelope, the error naming the
    line and column, the original bytes kept."""
    line = b'{"schema": "shop.Order", "payload": {"id": "o-1", "price": NaN}}'
    feed = _feed(tmp_path / "feed.jsonl", [line])
    dlq = tmp_path / "dlq.jsonl"
    code, _, _ = run(["consume", str(feed), "--dlq", str(dlq), *_common(policy_dir, schema_dir)])
    (record,) = [json.loads(x) for x in dlq.read_bytes().splitlines()]
    assert code == 0
    assert record["reason"] == "bad_envelope"
    assert record["error"] == "not JSON (NaN is not a JSON value: line 1 column 60 (char 59))"
    assert record["original"] == line.decode()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_unwritable_dlq_is_one_error_and_the_summary_counts_what_was_read(
    tmp_path, policy_dir, schema_dir
):
    """--dlq /dev/full: one error line and no traceback, exit 1, and a summary counting the
    messages read and left unacknowledged."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1), order(2, valid=False)])
    args = ["consume", str(feed), "--dlq", "/dev/full", "--sink-retries", "1"]
    code, stdout, stderr = run([*args, *_common(policy_dir, schema_dir)])
    assert code == 1
    assert "Traceback" not in stderr
    (error,) = [line for line in stderr.splitlines() if "/dev/full" in line]
    assert error.startswith("policy-engine consume: writing to the dead-letter queue failed")
    assert "2 message(s) read and not acknowledged" in error
    assert "2 read, 1 passed on" in stdout
    assert "0 acknowledged, 2 not acknowledged" in stdout
    assert "ended by error" in stdout

    code, stdout, stderr = run([*args, "--json", *_common(policy_dir, schema_dir)])
    summary = json.loads(stdout)
    assert code == 1
    assert (summary["read"], summary["acknowledged"], summary["unacknowledged"]) == (2, 0, 2)
    assert "No space left on device" in summary["error"]


def test_consume_file_needs_a_dlq(tmp_path, policy_dir, schema_dir):
    """A file source without --dlq is a usage error: rejects would have nowhere to go."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1)])
    code, _, stderr = run(["consume", str(feed), *_common(policy_dir, schema_dir)])
    assert code == 2
    assert "--dlq is required" in stderr


def test_consume_stdin_to_stdout(tmp_path, policy_dir, schema_dir):
    """'-' in, '-' out: passed lines on stdout, the summary on stderr."""
    stdin = order(1) + b"\n" + order(2, valid=False) + b"\n"
    code, stdout, stderr = run(
        [
            "consume",
            "-",
            "--output",
            "-",
            "--dlq",
            str(tmp_path / "dlq.jsonl"),
            *_common(policy_dir, schema_dir),
        ],
        stdin=stdin,
    )
    assert code == 0
    (line,) = stdout.splitlines()
    assert json.loads(line)["decision"]["action"] == "accepted"
    assert "2 read" in stderr


def test_consume_async_redis_drain(redis_client, streams, policy_dir, schema_dir):
    """--async runs the asyncio loop over Redis with the same results."""
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    for seq in range(30):
        redis_client.xadd(src, {"data": order(seq, valid=seq % 3 != 0)})
    code, stdout, _ = run(
        [
            "consume",
            f"{REDIS_URL}?stream={src}",
            "--output",
            f"{REDIS_URL}?stream={out}",
            "--dlq",
            f"{REDIS_URL}?stream={dlq}",
            "--drain",
            "--async",
            "--batch-size",
            "7",
            "--json",
            *_common(policy_dir, schema_dir),
        ]
    )
    assert code == 0
    assert json.loads(stdout)["read"] == 30
    assert redis_client.xlen(out) == 20
    assert redis_client.xlen(dlq) == 10


def test_consume_redis_default_dlq(redis_client, streams, policy_dir, schema_dir):
    """Without --dlq a Redis source dead-letters to '<stream>:dlq'."""
    src = streams("src")
    dlq = src + ":dlq"
    redis_client.xadd(src, {"data": order(1, valid=False)})
    try:
        code, _, _ = run(
            ["consume", f"{REDIS_URL}?stream={src}", "--drain", *_common(policy_dir, schema_dir)]
        )
        assert code == 0
        assert redis_client.xlen(dlq) == 1
    finally:
        redis_client.delete(dlq)


def test_consume_exits_1_when_the_dlq_keeps_failing(redis_client, streams, policy_dir, schema_dir):
    """A DLQ that refuses writes ends consume with exit 1 and the message still pending."""
    src, dlq = streams("src"), streams("dlq")
    redis_client.set(dlq, "not a stream")
    redis_client.xadd(src, {"data": order(1, valid=False)})
    code, _, stderr = run(
        [
            "consume",
            f"{REDIS_URL}?stream={src}",
            "--dlq",
            f"{REDIS_URL}?stream={dlq}",
            "--drain",
            "--sink-retries",
            "1",
            *_common(policy_dir, schema_dir),
        ]
    )
    assert code == 1
    assert "WRONGTYPE" in stderr
    assert redis_client.xpending(src, "policy-engine")["pending"] == 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_batch_and_exits_0(
    signum, redis_client, streams, policy_dir, schema_dir, tmp_path
):
    """SIGTERM/SIGINT: the batch in hand is written and acknowledged, then exit 0."""
    src, out, dlq = streams("src"), streams("out"), streams("dlq")
    pipe = redis_client.pipeline(transaction=False)
    for seq in range(30_000):
        pipe.xadd(src, {"data": order(seq, valid=seq % 50 != 0)})
    pipe.execute()
    proc = _spawn(
        [
            "consume",
            f"{REDIS_URL}?stream={src}",
            "--output",
            f"{REDIS_URL}?stream={out}",
            "--dlq",
            f"{REDIS_URL}?stream={dlq}",
            "--batch-size",
            "500",
            *_common(policy_dir, schema_dir),
        ],
        tmp_path,
    )
    assert _wait_for(lambda: redis_client.xlen(out) > 0)
    proc.send_signal(signum)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    read = int(redis_client.xinfo_groups(src)[0]["entries-read"])
    assert 0 < read < 30_000  # it stopped mid-stream...
    assert redis_client.xpending(src, "policy-engine")["pending"] == 0  # ...with all acked
    assert redis_client.xlen(out) + redis_client.xlen(dlq) == read
    assert b"ended by stopped" in stdout


def test_sighup_reloads_the_policies(tmp_path, policy_dir, schema_dir):
    """SIGHUP makes a running consume load changed policies (POLICY_WATCH off)."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1, valid=False)])
    out, dlq, log = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl", tmp_path / "stderr.log"
    proc = _spawn(
        [
            "consume",
            str(feed),
            "--follow",
            "--output",
            str(out),
            "--dlq",
            str(dlq),
            "--log-level",
            "info",
            *_common(policy_dir, schema_dir),
        ],
        tmp_path,
        stderr=(log_file := log.open("wb")),
    )
    try:
        assert _wait_for(lambda: dlq.exists() and dlq.read_bytes().count(b"\n") == 1)
        (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: b"SIGHUP reload: new policy set" in log.read_bytes())
        with feed.open("ab") as handle:
            handle.write(order(2, valid=False) + b"\n")
        assert _wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") == 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        log_file.close()
    assert proc.returncode == 0
    (line,) = out.read_bytes().splitlines()
    assert json.loads(line)["decision"]["action"] == "logged"


def test_sigterm_while_the_dlq_keeps_failing_exits_after_the_stop_timeout(
    redis_client, streams, policy_dir, schema_dir, tmp_path
):
    """SIGTERM while every DLQ write fails (retries far from spent): consume gives up once
    --stop-timeout has run out, exit 1 with a clear error, the message still pending."""
    src, dlq = streams("src"), streams("dlq")
    redis_client.set(dlq, "not a stream")  # every XADD to it fails with WRONGTYPE
    redis_client.xadd(src, {"data": order(1, valid=False)})
    log = tmp_path / "stderr.log"
    with log.open("wb") as log_file:
        proc = _spawn(
            [
                "consume",
                f"{REDIS_URL}?stream={src}",
                "--dlq",
                f"{REDIS_URL}?stream={dlq}",
                "--sink-retries",
                "1000",
                "--stop-timeout",
                "1",
                *_common(policy_dir, schema_dir),
            ],
            tmp_path,
            stderr=log_file,
        )
        try:
            assert _wait_for(lambda: b"retrying" in log.read_bytes())
            proc.send_signal(signal.SIGTERM)
            stdout, _ = proc.communicate(timeout=120)  # without a stop timeout: ~80 minutes
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    errors = log.read_bytes().decode()
    assert proc.returncode == 1
    assert (
        "SIGTERM: finishing the batch in hand (a write that keeps failing is retried 1 s more "
        "at most), then exiting" in errors
    )
    assert (
        "policy-engine consume: stopped, and writing to the dead-letter queue still failed when "
        "the stop timeout (1 s) ran out" in errors
    )
    assert "WRONGTYPE" in errors
    assert "Traceback" not in errors
    assert b"1 read" in stdout
    assert b"1 not acknowledged" in stdout
    assert b"ended by stop_timeout" in stdout
    assert redis_client.xpending(src, "policy-engine")["pending"] == 1


@pytest.mark.parametrize("use_async", [False, True])
def test_a_sink_that_fails_to_close_is_one_error_line_and_exit_1(
    use_async, monkeypatch, policy_dir, schema_dir
):
    """A sink whose close() raises after a run that went well: exit 1 with one line naming it,
    no traceback, and the summary still printed."""

    class Unclosable(MemorySink):
        def close(self):
            raise OSError(5, "Input/output error")

    memq = MemoryTransport("memq")
    monkeypatch.setitem(TRANSPORTS, "memq", memq)
    memq.sinks["dlq"] = Unclosable(name="memq://dlq")
    memq.source("in").put(order(1, valid=False))
    args = ["consume", "memq://in", "--dlq", "memq://dlq", *_common(policy_dir, schema_dir)]
    code, stdout, stderr = run([*args, "--async"] if use_async else args)
    assert code == 1
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        "policy-engine consume: closing memq://dlq failed: [Errno 5] Input/output error"
    )
    assert "1 read" in stdout
    assert "1 acknowledged" in stdout


def test_stop_timeout_is_validated_and_its_default_stated(tmp_path, policy_dir, schema_dir):
    """--stop-timeout refuses a negative value, and its default (the loop's) is in --help."""
    from policy_engine.cli import consume
    from policy_engine.loop.core import DEFAULT_STOP_TIMEOUT

    feed = _feed(tmp_path / "feed.jsonl", [order(1)])
    args = ["consume", str(feed), "--dlq", str(tmp_path / "dlq.jsonl")]
    code, _, stderr = run([*args, "--stop-timeout", "-1", *_common(policy_dir, schema_dir)])
    assert code == 2
    assert "--stop-timeout must be 0 or more seconds" in stderr
    assert consume.DEFAULT_STOP_TIMEOUT == DEFAULT_STOP_TIMEOUT
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    help_text = " ".join(subparsers.choices["consume"].format_help().split())
    assert f"exit 1 (default {DEFAULT_STOP_TIMEOUT:g})" in help_text


def test_metrics_are_served_while_consuming(tmp_path, policy_dir, schema_dir):
    """--metrics-port serves /metrics, dead letters counted in dlq_messages_total."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    feed = _feed(tmp_path / "feed.jsonl", [order(1, valid=False), order(2)])
    dlq = tmp_path / "dlq.jsonl"
    proc = _spawn(
        [
            "consume",
            str(feed),
            "--follow",
            "--dlq",
            str(dlq),
            "--metrics-port",
            str(port),
            *_common(policy_dir, schema_dir),
        ],
        tmp_path,
    )
    counted = 'dlq_messages_total{reason="rejected",schema="shop.Order"} 1.0'
    try:
        assert _wait_for(lambda: dlq.exists() and dlq.read_bytes().count(b"\n") == 1)
        # The DLQ line is written (and fsynced) before the counter moves: poll for the counter.
        assert _wait_for(lambda: counted in _metrics(port))
        text = _metrics(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert counted in text
    assert "schema_validations_total" in text


def test_redrive_file_dry_run_then_publish(tmp_path, policy_dir, schema_dir):
    """redrive: after the policy is relaxed, rejects are re-published to the source file and
    removed from the DLQ; --dry-run changes nothing."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1, valid=False), order(2), b"junk"])
    dlq = tmp_path / "dlq.jsonl"
    args = ["consume", str(feed), "--dlq", str(dlq), *_common(policy_dir, schema_dir)]
    assert run(args)[0] == 0
    before = dlq.read_bytes()
    (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")

    code, stdout, _ = run(
        ["redrive", str(dlq), "--dry-run", "--json", *_common(policy_dir, schema_dir)]
    )
    report = json.loads(stdout)
    assert code == 0
    assert (report["total"], report["passing"], report["bad_envelopes"]) == (2, 1, 1)
    assert report["published"] == 0
    assert dlq.read_bytes() == before

    code, stdout, _ = run(["redrive", str(dlq), *_common(policy_dir, schema_dir)])
    assert code == 0
    assert "1 published, 1 removed" in stdout
    lines = feed.read_bytes().splitlines()
    assert lines[-1] == order(1, valid=False)  # the original bytes, appended to the source
    (left,) = dlq.read_bytes().splitlines()
    assert json.loads(left)["reason"] == "bad_envelope"


def test_redrive_redis_back_to_the_source_stream(redis_client, streams, policy_dir, schema_dir):
    """A Redis DLQ's entries that now pass go back to their source stream and leave the DLQ."""
    src, dlq = streams("src"), streams("dlq")
    redis_client.xadd(src, {"data": order(1, valid=False), "trace": "t-9"})
    common = _common(policy_dir, schema_dir)
    consume = ["consume", f"{REDIS_URL}?stream={src}", "--dlq", f"{REDIS_URL}?stream={dlq}"]
    assert run([*consume, "--drain", *common])[0] == 0
    assert redis_client.xlen(dlq) == 1
    (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")
    code, stdout, _ = run(["redrive", f"{REDIS_URL}?stream={dlq}", "--json", *common])
    assert code == 0
    assert json.loads(stdout)["published"] == 1
    assert redis_client.xlen(dlq) == 0
    entries = redis_client.xrange(src)
    assert len(entries) == 2
    assert entries[-1][1] == {b"data": order(1, valid=False), b"trace": b"t-9"}


def test_redrive_to_an_explicit_target(tmp_path, policy_dir, schema_dir):
    """--to publishes somewhere else than the recorded source; --keep leaves the DLQ alone."""
    dlq = tmp_path / "dlq.jsonl"
    assert (
        run(
            ["consume", "-", "--dlq", str(dlq), *_common(policy_dir, schema_dir)],
            stdin=envelope("shop.Order", {"id": "x", "price": -1}) + b"\n",
        )[0]
        == 0
    )
    (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")
    code, _, stderr = run(["redrive", str(dlq), *_common(policy_dir, schema_dir)])
    assert code == 2
    assert "--to" in stderr  # it came from stdin: no source to go back to
    target = tmp_path / "fixed.jsonl"
    code, _, _ = run(
        ["redrive", str(dlq), "--to", str(target), "--keep", *_common(policy_dir, schema_dir)]
    )
    assert code == 0
    assert json.loads(target.read_bytes())["payload"] == {"id": "x", "price": -1}
    assert len(dlq.read_bytes().splitlines()) == 1


def test_replay_dlq_is_a_hidden_alias_of_redrive(tmp_path, policy_dir, schema_dir):
    """The old command name still redrives, after one stderr line saying it is now redrive,
    and is left out of the command list."""
    feed = _feed(tmp_path / "feed.jsonl", [order(1, valid=False)])
    dlq = tmp_path / "dlq.jsonl"
    common = _common(policy_dir, schema_dir)
    assert run(["consume", str(feed), "--dlq", str(dlq), *common])[0] == 0
    (policy_dir / "rules.yaml").write_text(RELAXED, encoding="utf-8")
    code, stdout, stderr = run(["replay-dlq", str(dlq), "--json", *common])
    assert code == 0
    assert stderr == "policy-engine replay-dlq: renamed to 'policy-engine redrive'\n"
    assert json.loads(stdout)["published"] == 1
    assert dlq.read_bytes() == b""
    usage = build_parser().format_help()
    assert "redrive" in usage
    assert "replay-dlq" not in usage


def test_readme_main_job(tmp_path):
    """The README's first command (consume the example feed with a JSONL DLQ) works."""
    env = {"POLICY_PATHS": str(REPO / "policies"), "REGISTRY_URL": str(REPO / "schemas")}
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    code, stdout, _ = run(
        ["consume", str(REPO / "examples" / "feed.jsonl"), "--output", str(out), "--dlq", str(dlq)],
        env=env,
    )
    assert code == 0
    passed = len(out.read_bytes().splitlines())
    dead = len(dlq.read_bytes().splitlines())
    assert passed + dead == 12_000
    assert "12000 read" in stdout
