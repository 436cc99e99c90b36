"""``policy-engine consume`` (the enforcement loop) and ``policy-engine redrive`` (the DLQ sent
back); ``replay-dlq`` is redrive's old name, kept as a hidden alias that says so."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from policy_engine.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    CommandError,
    Streams,
    add_common,
    build_engine,
    decision_logs_quiet,
    write_json,
)
from policy_engine.errors import ConfigError, LoopError

#: ``--stop-timeout``'s default; the loop's own (``loop.core.DEFAULT_STOP_TIMEOUT``), kept here so
#: building the parser does not import the loop. ``tests/loop`` checks the two agree.
DEFAULT_STOP_TIMEOUT = 10.0

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine
    from policy_engine.loop.core import LoopStats
    from policy_engine.loop.protocols import AsyncSink, AsyncSource, LoopHealth, Sink, Source


log = logging.getLogger("policy_engine.loop")

REDRIVE_DESCRIPTION = (
    "Evaluate every dead letter in DLQ (a JSONL file or a redis:// stream) with the policies "
    "and schemas in force. Those no longer rejected are published, with their original bytes, "
    "to --to or else back to the source recorded in each (a Redis stream on the DLQ's server, "
    "or the source file), then removed from the DLQ (a file DLQ is rewritten; do not run it "
    "while consume appends to that file). Exit 0."
)


def _endpoints_help() -> str:
    """What SOURCE and SINK may be, with the URL schemes the transport table knows."""
    from policy_engine.loop.endpoints import TRANSPORTS

    schemes = ", ".join(f"{scheme}://" for scheme in sorted(TRANSPORTS))
    return (
        f"SOURCE and SINK: a JSONL file path, '-' (stdin/stdout), or a URL ({schemes}), e.g. "
        "redis://host:port/db?stream=NAME&group=GROUP&consumer=NAME (a Redis entry carries the "
        "envelope as JSON text in its 'data' field)."
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``consume``, ``redrive`` and the hidden ``replay-dlq`` to the command line."""
    consume = sub.add_parser(
        "consume",
        help="run the enforcement loop: read, evaluate, pass on, dead-letter rejects",
        description="Read envelopes from SOURCE in batches, evaluate each, pass it on to --output "
        "with its decision added, and write what strict mode rejects (and lines that are not "
        "envelopes) to the dead-letter queue --dlq. A batch is acknowledged only after it was "
        "written (at-least-once). A file source stops at its end unless --follow; a Redis source "
        "runs until SIGTERM/SIGINT (which finish the batch in hand, within --stop-timeout) unless "
        "--drain. SIGHUP reloads "
        "the policies; with POLICY_WATCH=true (the default) they also reload when their "
        "directories change. With --metrics-port (or METRICS_PORT) it serves /metrics, /healthz, "
        "/readyz and /status on METRICS_ADDR (default every IPv4 interface). Prints a summary "
        "at the end. " + _endpoints_help(),
    )
    consume.add_argument("source", metavar="SOURCE", help="where messages come from")
    consume.add_argument(
        "--output",
        metavar="SINK",
        help="where passed messages go, with a 'decision' added (default: nowhere; they are "
        "acknowledged once evaluated)",
    )
    consume.add_argument(
        "--dlq",
        metavar="SINK",
        help="the dead-letter queue (default for a Redis source: stream '<stream>:dlq' on the "
        "same server; required for a file or stdin)",
    )
    consume.add_argument(
        "--follow", action="store_true", help="keep reading a file as it grows (like tail -f)"
    )
    consume.add_argument(
        "--drain",
        action="store_true",
        help="stop a Redis source once nothing is new and nothing is left to claim",
    )
    consume.add_argument(
        "--batch-size", type=int, default=100, metavar="N", help="messages per batch (100)"
    )
    consume.add_argument(
        "--max-messages", type=int, metavar="N", help="stop after reading N messages"
    )
    consume.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus /metrics and the probes /healthz, /readyz, /status on port P, "
        "bound to $METRICS_ADDR (default: $METRICS_PORT; unset: not served)",
    )
    consume.add_argument(
        "--guardrail-store",
        metavar="URL",
        help="share guardrail windows and trips with the other replicas through Redis: "
        "redis://host:port/db[?prefix=P] (default: $GUARDRAIL_STORE; '' turns it off). The "
        "loop merges once per batch, in the background; if the store is unreachable each "
        "replica decides on its own window",
    )
    consume.add_argument(
        "--group", help="Redis consumer group (overrides the URL's group; default policy-engine)"
    )
    consume.add_argument(
        "--consumer", help="Redis consumer name (overrides the URL's; default: the host name)"
    )
    consume.add_argument(
        "--claim-idle",
        type=float,
        metavar="SECONDS",
        help="claim entries another consumer left pending this long (default 60)",
    )
    consume.add_argument(
        "--mask-values",
        action="store_true",
        help="replace payload values quoted in violation messages with <masked> in the DLQ",
    )
    consume.add_argument(
        "--sink-retries",
        type=int,
        default=5,
        metavar="N",
        help="tries of a failing write or acknowledgement before giving up with the batch "
        "unacknowledged, exit 1 (5); a Redis source without --drain is read and acknowledged "
        "until it answers again",
    )
    consume.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        metavar="SECONDS",
        help="after SIGTERM/SIGINT, how long a write or acknowledgement that keeps failing is "
        "still retried; then consume gives up with the batch unacknowledged (it is delivered "
        f"again), exit 1 (default {DEFAULT_STOP_TIMEOUT:g})",
    )
    consume.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="run the asyncio form of the loop (same decisions, asyncio I/O)",
    )
    add_common(consume)
    consume.set_defaults(run=run_consume)

    redrive = sub.add_parser(
        "redrive",
        help="re-evaluate a dead-letter queue and publish again what now passes",
        description=REDRIVE_DESCRIPTION,
    )
    _add_redrive_arguments(redrive)
    redrive.set_defaults(run=run_redrive)

    # The old name still works for scripts written against it; no help= keeps it out of the
    # command list, and running it says it was renamed.
    old = sub.add_parser("replay-dlq", description=REDRIVE_DESCRIPTION)
    _add_redrive_arguments(old)
    old.set_defaults(run=run_replay_dlq)


def _add_redrive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dlq", metavar="DLQ", help="the dead-letter queue to redrive")
    parser.add_argument(
        "--to", metavar="SINK", help="publish here instead of each message's source"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="only report what would be published"
    )
    parser.add_argument("--keep", action="store_true", help="publish, but leave the DLQ as it is")
    add_common(parser)


def install_stop_signals(
    stop: Callable[[], None], stop_timeout: float | None = None
) -> Callable[[], None]:
    """SIGTERM and SIGINT call ``stop`` (finish the batch in hand); a second signal does what
    it did before (terminates). ``stop_timeout`` is only said in the log line. Returns a
    function restoring the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        previous.clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        bound = (
            ""
            if stop_timeout is None
            else f" (a write that keeps failing is retried {stop_timeout:g} s more at most)"
        )
        log.warning(
            "%s: finishing the batch in hand%s, then exiting", signal.Signals(signum).name, bound
        )
        stop()
        restore()

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return restore


def _watch_and_metrics(args: argparse.Namespace, streams: Streams) -> tuple[bool, int | None, str]:
    """``POLICY_WATCH``, the metrics port (``--metrics-port`` over ``METRICS_PORT``) and
    ``METRICS_ADDR``, checked before anything starts."""
    from policy_engine.settings import Settings

    try:
        settings = Settings.from_env(streams.environ)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
    if port is not None and not 0 <= port <= 65535:
        raise CommandError("--metrics-port must be 0-65535")
    return settings.policy_watch, port, settings.metrics_addr


def _with_guardrail_store(args: argparse.Namespace, streams: Streams) -> Streams:
    """``streams`` with ``--guardrail-store`` in place of ``GUARDRAIL_STORE`` (an empty URL
    unsets it), so the engine's settings see the flag the way they see the variable."""
    if args.guardrail_store is None:
        return streams
    environ = {**streams.environ, "GUARDRAIL_STORE": args.guardrail_store}
    return dataclasses.replace(streams, environ=environ)


def run_consume(args: argparse.Namespace, streams: Streams) -> int:
    """Run the loop until the source ends or a signal stops it; print the summary.

    With a metrics port, the port also serves the probes: a ``Health`` the loop keeps told
    whether it runs, whether the source answers and where it is (``/healthz``, ``/readyz``,
    ``/status``).
    """
    from policy_engine.loop.endpoints import default_dlq, describe_endpoint
    from policy_engine.metrics import Health, serve_metrics
    from policy_engine.reload import install_sighup_reload

    if args.batch_size < 1:
        raise CommandError("--batch-size must be 1 or more")
    if args.max_messages is not None and args.max_messages < 0:
        raise CommandError("--max-messages must be 0 or more")
    if args.sink_retries < 1:
        raise CommandError("--sink-retries must be 1 or more")
    if not 0 <= args.stop_timeout < float("inf"):
        raise CommandError("--stop-timeout must be 0 or more seconds")
    dlq = args.dlq or default_dlq(args.source)
    if dlq is None:
        raise CommandError(
            "--dlq is required for a file or stdin source: it is where rejected messages go "
            "(e.g. --dlq dlq.jsonl)"
        )
    if args.follow and args.source == "-":
        raise CommandError("--follow applies to a file; stdin is read until it closes")
    streams = _with_guardrail_store(args, streams)
    watch, port, addr = _watch_and_metrics(args, streams)
    report = streams.stderr if args.output == "-" else streams.stdout
    with build_engine(args, streams) as engine:
        if engine.guardrail_store is not None:
            log.info("guardrails shared through %s", engine.guardrail_store.description)
        if watch:
            engine.start_watching()
        server = None
        health: Health | None = None
        if port is not None:
            health = Health(engine, source=describe_endpoint(args.source), loop=True)
            try:
                server, _thread = serve_metrics(port, addr, health=health)
            except OSError as exc:
                raise CommandError(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
            log.info(
                "serving /metrics, /healthz, /readyz and /status on %s:%d",
                addr,
                server.server_port,
            )
        restore_hup = (
            install_sighup_reload(engine)
            if threading.current_thread() is threading.main_thread()
            else (lambda: None)
        )
        try:
            stats, error = _run(args, streams, engine, dlq, health)
        finally:
            restore_hup()
            if server is not None:
                server.shutdown()
                server.server_close()
    if error is not None:
        streams.stderr.write(f"policy-engine consume: {error}{_unacknowledged(stats)}\n")
    if args.json:
        write_json(
            report,
            {
                "source": describe_endpoint(args.source),
                "output": describe_endpoint(args.output) if args.output else None,
                "dlq": describe_endpoint(dlq),
                **stats.to_dict(),
                "error": str(error) if error is not None else None,
            },
        )
    else:
        report.write(f"consume {describe_endpoint(args.source)}: {stats.summary()}")
    return EXIT_FAIL if error is not None else EXIT_OK


def _settle_the_heap() -> None:
    """Move everything built so far (modules, the policy set, compiled schemas, the clients)
    out of the cyclic garbage collector's sight before the loop starts.

    The loop makes and drops a few dozen objects per message, so the collector runs every few
    messages; each run of the oldest generation walked this whole start-up heap, some 8 % of
    a message's CPU time (``benchmarks/bench_scale.py``, docs/scaling.md). Frozen objects are
    still freed by reference counting; only a reference cycle among them is kept (the start-up
    policy set, once a reload replaced it, if it holds one: a few dozen objects, once).
    """
    gc.collect()
    gc.freeze()


def _unacknowledged(stats: LoopStats) -> str:
    """What the error line adds about the messages in hand when the loop gave up."""
    left = stats.unacknowledged
    if not left:
        return ""
    return f"; {left} message(s) read and not acknowledged: they will be delivered again"


def _closing_failed(description: str, exc: Exception) -> LoopError:
    """A source or sink that failed to close, as one line (no traceback: its own words say it)."""
    return LoopError(f"closing {description} failed: {exc}", endpoint=description)


def _first_error(error: LoopError | None, failures: list[LoopError]) -> LoopError | None:
    """The error consume exits with: the loop's, else the first close that failed; any other
    close failure is logged as one line."""
    for failure in failures if error is not None else failures[1:]:
        log.error("%s", failure)
    if error is not None or not failures:
        return error
    return failures[0]


def _run(
    args: argparse.Namespace,
    streams: Streams,
    engine: PolicyEngine,
    dlq: str,
    health: LoopHealth | None = None,
) -> tuple[LoopStats, LoopError | None]:
    from policy_engine.loop.core import ConsumeLoop, IoRetry
    from policy_engine.loop.endpoints import open_message_sink, open_message_source

    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_messages": args.max_messages,
        "mask_values": args.mask_values,
        "retry": IoRetry(attempts=args.sink_retries),
        "stop_timeout": args.stop_timeout,
        "health": health,
    }
    source_options: dict[str, Any] = {
        "stdin": streams.stdin,
        "follow": args.follow,
        "drain": args.drain,
        "group": args.group,
        "consumer": args.consumer,
        "claim_idle": args.claim_idle,
    }
    if args.use_async:
        import asyncio  # only the --async form needs it

        return asyncio.run(_run_async(args, streams, engine, dlq, options, source_options))
    opened: list[Source | Sink] = []
    error: LoopError | None = None
    try:
        try:
            source = open_message_source(args.source, **source_options)
            opened.append(source)
            dlq_sink = open_message_sink(dlq, stdout=streams.stdout, fsync=True)
            opened.append(dlq_sink)
            output = None
            if args.output:
                output = open_message_sink(args.output, stdout=streams.stdout)
                opened.append(output)
        except (LoopError, ConfigError) as exc:
            raise CommandError(str(exc)) from exc
        loop = ConsumeLoop(engine, source, output=output, dlq=dlq_sink, **options)
        log.info(
            "consuming %s -> output %s, dlq %s",
            source.description,
            output.description if output else "(none)",
            dlq_sink.description,
        )
        restore = install_stop_signals(loop.stop, args.stop_timeout)
        _settle_the_heap()
        try:
            loop.run()
        except LoopError as exc:
            error = exc
        finally:
            restore()
    finally:
        failures: list[LoopError] = []
        for item in reversed(opened):
            try:
                item.close()
            except Exception as exc:  # reported as one line, never a traceback
                failures.append(_closing_failed(item.description, exc))
    return loop.stats, _first_error(error, failures)


async def _run_async(
    args: argparse.Namespace,
    streams: Streams,
    engine: PolicyEngine,
    dlq: str,
    options: dict[str, Any],
    source_options: dict[str, Any],
) -> tuple[LoopStats, LoopError | None]:
    from policy_engine.loop.core import AsyncConsumeLoop
    from policy_engine.loop.endpoints import open_async_message_sink, open_async_message_source

    opened: list[AsyncSource | AsyncSink] = []
    error: LoopError | None = None
    try:
        try:
            source = open_async_message_source(args.source, **source_options)
            opened.append(source)
            dlq_sink = open_async_message_sink(dlq, stdout=streams.stdout, fsync=True)
            opened.append(dlq_sink)
            output = None
            if args.output:
                output = open_async_message_sink(args.output, stdout=streams.stdout)
                opened.append(output)
        except (LoopError, ConfigError) as exc:
            raise CommandError(str(exc)) from exc
        loop = AsyncConsumeLoop(engine, source, output=output, dlq=dlq_sink, **options)
        restore = install_stop_signals(loop.stop, args.stop_timeout)
        _settle_the_heap()
        try:
            await loop.run()
        except LoopError as exc:
            error = exc
        finally:
            restore()
    finally:
        failures: list[LoopError] = []
        for item in reversed(opened):
            try:
                await item.close()
            except Exception as exc:  # reported as one line, never a traceback
                failures.append(_closing_failed(item.description, exc))
    return loop.stats, _first_error(error, failures)


def run_redrive(args: argparse.Namespace, streams: Streams) -> int:
    """Redrive a DLQ and print what was (or would be) published."""
    from policy_engine.loop.redrive import redrive_dead_letters

    # Re-evaluating still-rejected messages would log each failure again; the report says it.
    with decision_logs_quiet(), build_engine(args, streams) as engine:
        try:
            report = redrive_dead_letters(
                engine,
                args.dlq,
                target=args.to,
                dry_run=args.dry_run,
                keep=args.keep,
                stdout=streams.stdout,
            )
        except LoopError as exc:
            streams.stderr.write(f"policy-engine {args.command}: {exc}\n")
            return EXIT_FAIL
    out = streams.stderr if args.to == "-" else streams.stdout
    if args.json:
        write_json(out, report.to_dict())
    else:
        out.write(report.summary())
    return EXIT_OK


def run_replay_dlq(args: argparse.Namespace, streams: Streams) -> int:
    """``replay-dlq``, redrive's old name: say it was renamed, then redrive."""
    streams.stderr.write("policy-engine replay-dlq: renamed to 'policy-engine redrive'\n")
    return run_redrive(args, streams)
