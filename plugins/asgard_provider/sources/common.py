"""What every source reader shares: column selection, secret masking and a reader that obeys timeouts and stops."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from asgard_provider.exceptions import SourceCancelled, SourceError

#: Seconds a reader may take to connect (first batch included in the statement budget) unless configured.
DEFAULT_CONNECT_TIMEOUT_S = 30
#: Seconds a source may take to produce its next batch unless configured.
DEFAULT_STATEMENT_TIMEOUT_S = 3600
_POLL_S = 0.5


@dataclass(frozen=True)
class Columns:
    """Which source columns land in Bronze: ``include`` (all when ``None``) minus ``exclude``."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, include: Sequence[str] | None, exclude: Sequence[str] | None) -> Columns:
        """Build from config lists (``columns`` / ``exclude_columns``)."""
        return cls(tuple(include) if include else None, tuple(exclude or ()))

    def check(self, available: Sequence[str], source: str) -> list[str]:
        """Return the column names to keep from ``available``; name ``source`` and the missing keys otherwise."""
        missing = [c for c in (*(self.include or ()), *self.exclude) if c not in available]
        if missing:
            key = "columns" if self.include and missing[0] in self.include else "exclude_columns"
            raise SourceError(
                f"{source}: {key} names {', '.join(repr(c) for c in missing)}, which the source does not have "
                f"(it has {', '.join(available)})"
            )
        keep = list(self.include) if self.include else list(available)
        return [c for c in keep if c not in self.exclude]

    def apply(self, batches: Iterable[pa.RecordBatch], source: str) -> Iterator[pa.RecordBatch]:
        """Project each batch to the kept columns (checked against the first batch's schema)."""
        keep: list[str] | None = None
        for batch in batches:
            if keep is None:
                keep = self.check(batch.schema.names, source)
            yield batch.select([c for c in keep if c in batch.schema.names])


def mask(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every non-empty secret (and its URL-quoted form) in ``text`` by ``***``."""
    from urllib.parse import quote

    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe=""), quote(secret)}:
                text = text.replace(form, "***")
    return text


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Watchdog:
    """Run a blocking batch producer in a daemon thread; the caller's thread keeps handling signals.

    Native drivers block in C while they connect or wait for rows, where Python cannot run a signal handler.
    The caller waits on a queue in short polls instead, so ``cancel()`` (from a SIGTERM handler) and the
    timeouts take effect within half a second; an abandoned producer thread dies with the process.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()

    def cancel(self) -> None:
        """Make the running (or next) :meth:`run` raise :class:`SourceCancelled`."""
        self._stop.set()

    def run(
        self,
        produce: Callable[[], Iterable[pa.RecordBatch]],
        *,
        first_timeout: float,
        next_timeout: float,
        what: str,
    ) -> Iterator[pa.RecordBatch]:
        """Yield ``produce()``'s batches; raise SourceError after a timeout, SourceCancelled on stop."""
        out: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=2)
        done = threading.Event()

        def worker() -> None:
            try:
                for batch in produce():
                    while not done.is_set():
                        try:
                            out.put(("batch", batch), timeout=_POLL_S)
                            break
                        except queue.Full:
                            continue
                    if done.is_set():
                        return
                out.put(("end", None))
            except BaseException as exc:
                out.put(("error", exc))

        threading.Thread(target=worker, name=f"asgard-read {what}", daemon=True).start()
        timeout = first_timeout
        try:
            while True:
                kind, item = self._next(out, timeout, what)
                if kind == "end":
                    return
                if kind == "error":
                    assert isinstance(item, BaseException)
                    raise item
                assert isinstance(item, pa.RecordBatch)
                yield item
                timeout = next_timeout
        finally:
            done.set()

    def _next(self, out: queue.Queue[tuple[str, object]], timeout: float, what: str) -> tuple[str, object]:
        waited = 0.0
        while True:
            if self._stop.is_set():
                raise SourceCancelled(f"{what}: stopped (the task was told to terminate)")
            try:
                return out.get(timeout=_POLL_S)
            except queue.Empty:
                waited += _POLL_S
                if waited >= timeout:
                    raise SourceError(
                        f"{what}: no answer within {timeout:g} s (raise connect_timeout_seconds or "
                        "statement_timeout_seconds if the source is just slow)"
                    ) from None


def utc_naive(value: object, what: str) -> datetime:
    """Parse an ISO timestamp (``Z`` allowed); aware values are converted to UTC; the result has no tzinfo."""
    from datetime import UTC

    try:
        parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise SourceError(f"{what}: {value!r} is not an ISO timestamp") from exc
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def source_connection(hook: Any, conn_id: str) -> Any:
    """Return ``hook``'s Airflow connection ``conn_id``; a ``SourceError`` saying how to define it if missing."""
    try:
        return hook.get_connection(conn_id)
    except Exception as exc:
        raise SourceError(
            f"Airflow connection {conn_id!r} is not defined (set AIRFLOW_CONN_{conn_id.upper()} or add it in the UI)"
        ) from exc
