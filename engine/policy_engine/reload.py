"""Hot reload: watch the policy directories and swap a new policy set in whole.

Directories are watched, never single files: editors save by writing a temporary file and
renaming it over the old one, ``git pull`` and config management replace files, and a Kubernetes
ConfigMap update writes a new ``..<timestamp>`` directory and swaps the ``..data`` symlink while
the path the engine reads never changes. Any change in a watched directory therefore triggers a
reload attempt; an attempt that produces the same checksum is a no-op, and one that fails leaves
the last good policy set serving (the engine records why, see ``PolicyEngine.status()``).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import watchfiles

from policy_engine.core.guardrail import TrippedGuardrail
from policy_engine.errors import PolicyError, PolicyLoadError

if TYPE_CHECKING:
    from policy_engine.engine import PolicyEngine

log = logging.getLogger("policy_engine.reload")

#: Changes closer together than this are one reload (an editor's write + rename, a git pull).
DEBOUNCE_MS = 50
#: How often the watcher checks for changes and for the stop signal.
STEP_MS = 20


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """What ``PolicyEngine.status()`` reports: is the intended policy set the one serving?"""

    checksum: str
    files: tuple[str, ...]
    last_error: PolicyError | None
    last_error_at: float | None
    last_success_at: float | None
    watching: bool
    guardrails: tuple[TrippedGuardrail, ...] = ()

    @property
    def healthy(self) -> bool:
        """``True`` unless the latest reload attempt failed (the previous set keeps serving)."""
        return self.last_error is None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready form (for health endpoints and ``--json`` outputs)."""
        problems = (
            [str(p) for p in self.last_error.problems]
            if isinstance(self.last_error, PolicyLoadError)
            else ([str(self.last_error)] if self.last_error else [])
        )
        return {
            "checksum": self.checksum,
            "files": list(self.files),
            "healthy": self.healthy,
            "last_error": problems or None,
            "last_error_at": self.last_error_at,
            "last_success_at": self.last_success_at,
            "watching": self.watching,
            "guardrails_tripped": [
                {
                    "schema": g.schema,
                    "track": g.track,
                    "reject_rate": g.reject_rate,
                    "until": g.until,
                }
                for g in self.guardrails
            ],
        }


def watch_roots(paths: Iterable[str]) -> list[Path]:
    """The directories to watch for ``paths``: each directory itself, a file's parent.

    Paths that do not exist are left out (with a warning): there is nothing to watch yet.
    """
    roots: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = path
        elif path.is_file():
            root = path.parent
        else:
            log.warning("policy path %s does not exist; it is not watched", raw)
            continue
        if root not in roots:
            roots.append(root)
    return roots


class PolicyWatcher:
    """A background thread that reloads ``engine`` whenever a policy directory changes.

    ``on_change`` is what runs after a batch of changes (default: ``engine.reload``
    with errors logged once); tests and the benchmark may pass their own.
    """

    def __init__(
        self,
        engine: PolicyEngine,
        roots: list[Path],
        *,
        debounce_ms: int = DEBOUNCE_MS,
        step_ms: int = STEP_MS,
    ) -> None:
        self._engine = engine
        self.roots = roots
        self._debounce_ms = debounce_ms
        self._step_ms = step_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-engine-watcher", daemon=True)

    @property
    def running(self) -> bool:
        """Whether the watcher thread is alive."""
        return self._thread.is_alive()

    def start(self, timeout: float = 5.0) -> None:
        """Start watching; returns once the watcher is listening for changes."""
        self._thread.start()
        self._ready.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait for the thread to finish."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            watcher = watchfiles.watch(
                *self.roots,
                watch_filter=None,  # every change counts: `..data` swaps, renames, deletes
                debounce=self._debounce_ms,
                step=self._step_ms,
                stop_event=self._stop,
                yield_on_timeout=True,
                rust_timeout=self._step_ms * 5,
                raise_interrupt=False,
            )
            for changes in watcher:
                self._ready.set()
                if changes:
                    self.reload_now()
        except Exception:
            log.exception("the policy watcher stopped; policies are no longer hot-reloaded")
        finally:
            self._ready.set()

    def reload_now(self) -> None:
        """Reload the engine's policies; never raises.

        A failure is recorded, counted and logged by ``PolicyEngine.reload`` itself, the same
        way whoever triggered it; the watcher only keeps watching.
        """
        try:
            self._engine.reload()
        except PolicyError:
            return  # the engine has recorded, counted and logged it
        except Exception:  # a hook or a bug: the thread must outlive it
            log.exception("policy reload failed unexpectedly; the last good set keeps serving")


def install_sighup_reload(engine: PolicyEngine) -> Callable[[], None]:
    """Make ``SIGHUP`` reload ``engine``'s policies (long-running CLI commands call this).

    The handler only starts a thread that reloads, so nothing a reload does can escape into
    the code the signal interrupted (a consume loop, say), and a signal arriving while that
    code holds the engine's reload lock cannot deadlock it. A failure is recorded like any
    failed reload (``status()``, the metric, the engine's ERROR line); a ``SIGHUP`` that meets
    the same error again, which the engine does not repeat, says so at WARNING, and every other
    outcome is an INFO line. Returns a function that restores the previous handler.
    Must be called from the main thread (a Python rule for signal handlers).
    """

    def reload_and_say() -> None:
        before = engine.status().last_error
        try:
            changed = engine.reload()
        except PolicyError as exc:
            if before is not None and str(before) == str(exc):
                # The engine logs an error once; say that this signal met it again.
                log.warning(
                    "SIGHUP reload failed again with the same error; still serving policy set %s",
                    engine.checksum,
                )
            else:
                log.info("SIGHUP reload failed; still serving policy set %s", engine.checksum)
            return
        except Exception:  # a hook or a bug: the process must outlive it
            log.exception("SIGHUP reload failed unexpectedly; the last good set keeps serving")
            return
        log.info(
            "SIGHUP reload: %s", "new policy set " + engine.checksum if changed else "no change"
        )

    def handler(signum: int, frame: FrameType | None) -> None:
        try:
            threading.Thread(
                target=reload_and_say, name="policy-engine-sighup", daemon=True
            ).start()
        except Exception:  # no exception may leave a signal handler: it would stop the program
            log.exception("SIGHUP: could not start the reload; the last good set keeps serving")

    previous = signal.signal(signal.SIGHUP, handler)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore
