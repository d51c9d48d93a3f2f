"""`annotate`'s reader: lines in, lines out, one at a time, in bounded memory.

Lines are bytes from end to end, so a line that is not UTF-8 passes through untouched. From a
pipe or a terminal every line is written as soon as it is read (`dmesg -w | vethpeer annotate`);
from a file, in large writes. While following a stream the index is rebuilt when the journal
has changed (checked every few seconds), so veths that appear meanwhile are named too.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from typing import BinaryIO, TextIO

from .annotate import Index, annotate_line
from .binding import Recorded
from .store import Store
from .times import boot_time, line_time

RELOAD_EVERY = 2.0  # seconds between checks of the journal while following


class Output:
    """Bytes to stdout: its binary buffer when it has one, else decoded losslessly (tests' StringIO)."""

    def __init__(self, stream: TextIO) -> None:
        self._text = stream
        self._binary: BinaryIO | None = getattr(stream, "buffer", None)
        if self._binary is not None:
            stream.flush()

    def write(self, data: bytes) -> None:
        if self._binary is not None:
            self._binary.write(data)
        else:
            self._text.write(data.decode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        (self._binary or self._text).flush()


def output_of(stream: TextIO) -> Output:
    return Output(stream)


def _is_file(source: BinaryIO) -> bool:
    try:
        return stat.S_ISREG(os.fstat(source.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):
        return True  # an in-memory stream: nothing to follow


def _find(store: Store, token: str) -> list[Recorded]:
    with store.snapshot():
        return store.find([token])


class Annotator:
    def __init__(
        self,
        store: Store | None,
        tolerance: float,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._tolerance = tolerance
        self._clock = clock
        self._monotonic = monotonic
        self._boot = boot_time()
        self._version = -1
        self._checked = float("-inf")
        self.index = Index(set(), lambda _t: [])
        self._reload()

    def _reload(self) -> None:
        if self._store is None:
            return
        version = self._store.data_version()
        if version != self._version:
            store = self._store
            with store.snapshot():
                tokens = {t.encode("utf-8", "surrogateescape") for t in store.log_tokens()}
            self.index = Index(tokens, lambda token: _find(store, token))
            self._version = version
        self._checked = self._monotonic()

    def when(self, line: bytes) -> float:
        now = self._clock()
        moment = line_time(line, self._boot, now)
        return now if moment is None else moment

    def line(self, line: bytes) -> bytes:
        if not self.index.tokens:
            return line
        return annotate_line(line, self.index, self.when, self._tolerance)

    def stream(self, source: BinaryIO, out: Output) -> None:
        follow = not _is_file(source)
        for raw in source:
            if follow and self._monotonic() - self._checked >= RELOAD_EVERY:
                self._reload()
            out.write(self.line(raw))
            if follow:
                out.flush()
        out.flush()
