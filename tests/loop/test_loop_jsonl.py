"""JSONL files, stdin and stdout as sources and sinks, with real file writes."""

from __future__ import annotations

import errno
import io
import json
import os
import threading
import time

import pytest
from loop_support import envelope, order

from policy_engine import SinkError
from policy_engine.loop import (
    ConsumeLoop,
    DeadLetter,
    IoRetry,
    JsonlSink,
    JsonlSource,
    MemorySink,
    MemorySource,
    Message,
    Passed,
    Position,
)
from policy_engine.loop.transports.jsonl import encode_line


def _write(path, lines, *, newline_at_end=True):
    text = b"\n".join(lines) + (b"\n" if newline_at_end else b"")
    path.write_bytes(text)


def test_file_to_files_every_line_lands_somewhere(engine, tmp_path):
    """A file consumed to an output file and a DLQ file: every envelope is in one of them."""
    feed = tmp_path / "feed.jsonl"
    lines = [order(i, valid=i % 5 != 0) for i in range(1, 51)] + [b"{bad"]
    _write(feed, lines)
    out_path, dlq_path = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    source = JsonlSource(feed)
    out, dlq = JsonlSink(out_path), JsonlSink(dlq_path, fsync=True)
    stats = ConsumeLoop(engine, source, output=out, dlq=dlq, batch_size=7).run()
    out.close()
    dlq.close()
    source.close()
    passed = [json.loads(x) for x in out_path.read_bytes().splitlines()]
    dead = [json.loads(x) for x in dlq_path.read_bytes().splitlines()]
    assert len(passed) == 40
    assert len(dead) == 11
    assert sorted(p["payload"]["seq"] for p in passed) == [i for i in range(1, 51) if i % 5]
    assert [d["reason"] for d in dead].count("bad_envelope") == 1
    assert stats.ended_by == "end"


def test_output_line_keeps_the_original_bytes_and_adds_the_decision(engine, tmp_path):
    """A passed line is the original envelope, byte for byte, with a decision field spliced in."""
    original = b'{ "schema" : "shop.Order",  "payload": {"id": "x", "price": 2} }'
    feed = tmp_path / "feed.jsonl"
    _write(feed, [original])
    out = MemorySink()
    ConsumeLoop(engine, JsonlSource(feed), output=out, dlq=MemorySink()).run()
    (line,) = out.lines()
    assert line.startswith(original[:-1].rstrip())
    data = json.loads(line)
    assert data["decision"]["action"] == "accepted"
    assert data["decision"]["schema"] == "shop.Order"
    assert data["payload"] == {"id": "x", "price": 2}


def test_envelope_with_a_decision_field_is_reencoded(engine):
    """An envelope that already has a decision field gets it replaced, not duplicated."""
    source_line = envelope("shop.Order", {"id": "x", "price": 2}, decision="old")
    out = MemorySink()
    ConsumeLoop(engine, MemorySource([source_line]), output=out, dlq=MemorySink()).run()
    (line,) = out.lines()
    assert line.count(b'"decision"') == 1
    assert json.loads(line)["decision"]["action"] == "accepted"


def test_last_line_without_newline_is_read(engine, tmp_path):
    """A file whose last line has no newline still yields that line."""
    feed = tmp_path / "feed.jsonl"
    _write(feed, [order(1), order(2)], newline_at_end=False)
    out = MemorySink()
    ConsumeLoop(engine, JsonlSource(feed), output=out, dlq=MemorySink()).run()
    assert len(out.records) == 2


def test_blank_lines_are_skipped_but_numbered(tmp_path):
    """Blank lines carry nothing; positions still give the real line numbers and offsets."""
    feed = tmp_path / "feed.jsonl"
    feed.write_bytes(b"\n" + order(1) + b"\n   \n" + order(2) + b"\n")
    batch = JsonlSource(feed).read(10, 0.1)
    assert [m.position.id for m in batch] == ["2", "4"]
    assert batch[0].position.offset == 1
    assert feed.read_bytes()[batch[1].position.offset :].startswith(order(2))


def test_line_over_the_limit_is_a_bad_envelope(engine, tmp_path):
    """A line longer than the limit is dead-lettered as a bad envelope; reading goes on."""
    feed = tmp_path / "feed.jsonl"
    long_line = envelope("shop.Order", {"id": "x" * 5000, "price": 1})
    _write(feed, [order(1), long_line, order(3)])
    out, dlq = MemorySink(), MemorySink()
    source = JsonlSource(feed, limit=1000)
    ConsumeLoop(engine, source, output=out, dlq=dlq).run()
    assert [r.message.position.id for r in out.records] == ["1", "3"]
    (letter,) = dlq.records
    assert letter.reason == "bad_envelope"
    assert "longer than 1000 bytes" in letter.context["error"]


def test_stdin_to_stdout(engine):
    """'-' reads stdin and writes stdout: a pipe filter."""
    stdin = io.BytesIO(order(1) + b"\n" + order(2, valid=False) + b"\n")
    stdout = io.StringIO()
    dlq = MemorySink()
    out = JsonlSink(stream=stdout)
    ConsumeLoop(engine, JsonlSource(stream=stdin), output=out, dlq=dlq).run()
    lines = stdout.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["payload"]["seq"] == 1
    assert dlq.records[0].message.position.kind == "stdin"


def test_dlq_file_appends_are_fsynced(engine, tmp_path, monkeypatch):
    """Every DLQ write is followed by an fsync of the DLQ file before the batch is acked."""
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    dlq = JsonlSink(tmp_path / "dlq.jsonl", fsync=True)
    out = JsonlSink(tmp_path / "out.jsonl")
    source = MemorySource([order(1, valid=False), order(2), order(3, valid=False)])
    ConsumeLoop(engine, source, output=out, dlq=dlq, batch_size=1).run()
    file_syncs = [fd for fd in synced if fd == dlq._file.fileno()]
    assert len(file_syncs) == 2
    assert len((tmp_path / "dlq.jsonl").read_bytes().splitlines()) == 2


def test_dlq_append_keeps_existing_records(engine, tmp_path):
    """A DLQ file is appended to, never truncated, across runs."""
    dlq_path = tmp_path / "dlq.jsonl"
    dlq_path.write_bytes(b'{"reason": "rejected", "original": "{}"}\n')
    sink = JsonlSink(dlq_path, fsync=True)
    ConsumeLoop(engine, MemorySource([order(1, valid=False)]), dlq=sink).run()
    sink.close()
    assert len(dlq_path.read_bytes().splitlines()) == 2


def test_unwritable_dlq_raises_sink_error(engine, tmp_path):
    """A DLQ path that cannot be opened is a SinkError and the batch is not acknowledged."""
    source = MemorySource([order(1, valid=False)])
    dlq = JsonlSink(tmp_path / "missing-dir" / "dlq.jsonl", fsync=True)
    loop = ConsumeLoop(
        engine, source, dlq=dlq, retry=IoRetry(attempts=2, backoff=0.0), sleep=lambda s: None
    )
    with pytest.raises(SinkError, match="write failed"):
        loop.run()
    assert source.acked == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_fails_the_write_and_leaves_close_nothing_to_fail_on():
    """A write to a full disk is a SinkError; close() afterwards does not fail again."""
    sink = JsonlSink("/dev/full", fsync=True)
    letter = _dead_letter(order(1, valid=False))
    with pytest.raises(SinkError, match="No space left on device"):
        sink.write([letter])
    sink.close()


class _FillsUp(io.FileIO):
    """A file that takes ``room`` bytes and then fails as a full disk does."""

    def __init__(self, path, room):
        super().__init__(path, "ab")
        self.room = room

    def write(self, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        data = bytes(data[: self.room])
        self.room -= len(data)
        return super().write(data)


def test_a_write_that_fails_part_way_does_not_merge_into_the_next(tmp_path, monkeypatch):
    """The part of a line a failed write left is ended before the retry writes, so every record
    written afterwards is a whole line of its own."""
    path = tmp_path / "dlq.jsonl"
    sink = JsonlSink(path, fsync=True)
    disk = _FillsUp(path, room=10)
    monkeypatch.setattr(sink, "_open", lambda: disk)
    letters = [_dead_letter(order(1, valid=False)), _dead_letter(order(2, valid=False))]
    with pytest.raises(SinkError):
        sink.write(letters)
    disk.room = 1 << 20
    sink.write(letters)
    sink.close()
    fragment, *whole = path.read_bytes().splitlines()
    assert fragment == encode_line(letters[0])[:10]
    assert [json.loads(line)["original"] for line in whole] == [
        order(1, valid=False).decode(),
        order(2, valid=False).decode(),
    ]


def _dead_letter(data):
    return DeadLetter(
        Message(data, Position("file", "feed.jsonl", "1")), "rejected", {"reason": "rejected"}
    )


def test_follow_reads_appended_lines_and_rotation(engine, tmp_path):
    """--follow picks up lines appended later and a new file after the old one was rotated."""
    feed = tmp_path / "feed.jsonl"
    _write(feed, [order(1)])
    source = JsonlSource(feed, follow=True, poll_interval=0.01)
    out = MemorySink()
    loop = ConsumeLoop(engine, source, output=out, dlq=MemorySink(), poll_timeout=0.05)
    thread = threading.Thread(target=loop.run)
    thread.start()

    def wait_for(count):
        deadline = time.monotonic() + 60
        while len(out.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(out.records)

    assert wait_for(1) == 1
    with feed.open("ab") as handle:
        handle.write(order(2) + b"\n")
    assert wait_for(2) == 2
    feed.rename(tmp_path / "feed.jsonl.1")
    _write(feed, [order(3)])
    assert wait_for(3) == 3
    loop.stop()
    thread.join(60)
    source.close()
    seqs = [json.loads(encode_line(r))["payload"]["seq"] for r in out.records]
    assert seqs == [1, 2, 3]
    assert all(isinstance(r, Passed) for r in out.records)


def test_follow_waits_for_a_partial_line_to_complete(engine, tmp_path):
    """A followed file's half-written last line is read only once its newline arrives."""
    feed = tmp_path / "feed.jsonl"
    line = order(1)
    feed.write_bytes(line[:10])
    source = JsonlSource(feed, follow=True, poll_interval=0.01)
    assert source.read(10, 0.05) == []
    with feed.open("ab") as handle:
        handle.write(line[10:] + b"\n")
    (message,) = source.read(10, 0.5)
    assert message.data == line
    source.close()


def test_rotation_keeps_the_old_files_unfinished_last_line(tmp_path):
    """A line the writer left without a newline before rotating is still read, then the new
    file from its start."""
    feed = tmp_path / "feed.jsonl"
    _write(feed, [order(1)])
    source = JsonlSource(feed, follow=True, poll_interval=0.01)
    assert [m.data for m in source.read(10, 0.05)] == [order(1)]
    with feed.open("ab") as handle:
        handle.write(order(2))  # no newline: the writer rotates mid-line
    feed.rename(tmp_path / "feed.jsonl.1")
    _write(feed, [order(3)])
    seen: list[bytes | None] = []
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        seen.extend(m.data for m in source.read(10, 0.05))
    source.close()
    assert seen == [order(2), order(3)]
