"""Searching one read-only Edge collection on several cores: reader processes over private copies.

``EdgeShard.query_batch`` holds the GIL (measured with qdrant-edge-py 0.9.0: two threads searching halves of a
batch take as long as one thread), so threads cannot use a second core. A read-only :class:`EdgeStore` can
start *reader processes* instead: each loads its own private copy of the collection (made from the parent's
private copy, so every process searches exactly the same points and HNSW graph) and searches the chunks of
query rows it is sent. The parent searches chunks too; a chunk goes to whoever is free, and the results are
put back in row order, so the neighbours are the ones a single process finds.

Each reader is ``python -m indexer.store._edge_readers <shard dir>``; it reads requests from stdin and
writes replies to stdout, both as length-prefixed pickles (between two processes of this package only, never
stored). A reader exits when its stdin closes, so it never outlives the store (or the process) that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import shutil
import struct
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import qdrant_edge as qe

from indexer.store._edge_copy import copy_sparse
from indexer.store._protocol import Where
from indexer.store._shared import point_int, where_conditions

logger = logging.getLogger(__name__)

Hits = tuple[list[list[int]], list[list[float]], list[list[dict[str, Any]]]]
"""One chunk's result: per query row the hit ids as 128-bit integers (empty without ``with_ids``), scores and
payloads."""

IN_FLIGHT = 2
"""Chunks sent ahead to each reader, so it starts the next one while the parent collects the last."""

_PIPE_BYTES = 1 << 20
_HEADER = struct.Struct("<Q")


def edge_filter(where: Where | None, ids: Sequence[str] | None = None) -> qe.Filter | Literal[False] | None:
    """Build an Edge filter; ``False`` when nothing can match, ``None`` when everything matches."""
    conds = where_conditions(where)
    if conds is None:
        return False
    must: list[Any] = []
    if ids is not None:
        if not ids:
            return False
        must.append(qe.HasIdCondition(set(ids)))
    for field, kind, value in conds:
        match = qe.MatchValue(value) if kind == "value" else qe.MatchAny(value)
        must.append(qe.FieldCondition(key=field, match=match))
    return qe.Filter(must=must) if must else None


@dataclass(frozen=True, slots=True)
class SearchSpec:
    """What a query asks, in plain values a reader process can be sent."""

    using: str
    limit: int
    where: dict[str, Any] | None
    payload_fields: list[str] | None
    with_ids: bool
    hnsw_ef: int
    exact: bool
    quantization: tuple[bool, float] | None
    """``(rescore, oversampling)`` of an int8-quantised collection, else ``None``."""


def search_shard(shard: Any, rows: np.ndarray, spec: SearchSpec) -> Hits:
    """Search ``rows`` (float32, one query per row) in one ``query_batch`` call."""
    flt = edge_filter(spec.where)
    if flt is False:
        n = len(rows)
        return [[] for _ in range(n)], [[] for _ in range(n)], [[] for _ in range(n)]
    fields = spec.payload_fields
    with_payload: Any = True if fields is None else (list(fields) or False)
    quant = (
        None
        if spec.quantization is None
        else qe.QuantizationSearchParams(rescore=spec.quantization[0], oversampling=spec.quantization[1])
    )
    params = qe.SearchParams(hnsw_ef=spec.hnsw_ef, exact=spec.exact, quantization=quant)
    query = qe.Query.Nearest
    reqs = [
        qe.QueryRequest(
            limit=spec.limit,
            query=query(v, using=spec.using),
            filter=flt,
            with_payload=with_payload,
            with_vector=False,
            params=params,
        )
        for v in rows.tolist()
    ]
    res = shard.query_batch(qe.QueryBatchRequest(reqs))
    ids: list[list[int]] = []
    scores: list[list[float]] = []
    pays: list[list[dict[str, Any]]] = []
    for hits in res:
        # Edge returns UUID objects: their .int is ~30x cheaper than their text
        ids.append([point_int(h.id) for h in hits] if spec.with_ids else [])
        scores.append([h.score for h in hits])
        pays.append([h.payload or {} for h in hits] if with_payload is not False else [{} for _ in hits])
    return ids, scores, pays


# ------------------------------------------------------------------------------------------ framing


def _send(f: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = f.write(view)
        view = view[n if n is not None else 0 :]
    f.flush()


def _read_exact(f: IO[bytes], size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = f.read(size - got)
        if not part:
            raise EOFError
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def _recv(f: IO[bytes]) -> Any:
    (size,) = _HEADER.unpack(_read_exact(f, _HEADER.size))
    return pickle.loads(_read_exact(f, size))


def _widen(f: IO[bytes]) -> None:
    """Let a pipe hold a few chunks (Linux), so that neither side waits on a write."""
    with contextlib.suppress(AttributeError, OSError):
        import fcntl

        fcntl.fcntl(f.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _readable(f: IO[bytes]) -> bool:
    ready, _, _ = select.select([f], [], [], 0)
    return bool(ready)


# ------------------------------------------------------------------------------------------ the parent side


class _Reader:
    """One reader process and the chunks it has been sent but not answered."""

    def __init__(self, source: Path, shard_dir: Path) -> None:
        import indexer

        env = dict(os.environ)
        root = str(Path(indexer.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "indexer.store._edge_readers", str(source), str(shard_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its failures come back as messages; Ctrl-C must not print its traceback
            bufsize=0,  # unbuffered, so that select() sees every byte not yet read
            env=env,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout
        _widen(self.stdin)
        _widen(self.stdout)
        self.sent: deque[tuple[int, int]] = deque()
        """``(call, chunk)`` of each request not answered yet, oldest first (replies come in this order)."""
        self.ready = False
        """Whether it said it loaded its copy (its first message, before any reply)."""

    def wait_ready(self) -> bool:
        """Block until the reader has loaded its copy; return ``False`` if it exited instead."""
        if not self.ready:
            try:
                hello = _recv(self.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                return False
            if hello != "ready":
                logger.warning("a search process could not load its copy: %s", hello)
                return False
            self.ready = True
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.stdout.close()


class ReaderPool:
    """Reader processes for one collection of a read-only store, started once and kept until ``close()``.

    Parameters
    ----------
    copies
        Per reader, the store's private copy of the collection and the folder the reader copies it into
        (with :func:`indexer.store._edge_copy.copy_sparse`) and loads.
    """

    def __init__(self, copies: Sequence[tuple[Path, Path]]) -> None:
        self.readers = [_Reader(src, dest) for src, dest in copies]
        self._call = 0
        self.answered = 0
        """Chunks whose results came from a reader process (the rest were searched in this process)."""

    def wait_ready(self) -> int:
        """Block until every reader has loaded its copy; stop those that failed; return how many are left."""
        for r in list(self.readers):
            if not r.wait_ready():
                logger.warning("a search process stopped while loading (exit %s)", r.proc.poll())
                r.close()
                self.readers.remove(r)
        return len(self.readers)

    def search(self, chunks: Sequence[np.ndarray], spec: SearchSpec, here: Callable[[np.ndarray], Hits]) -> list[Hits]:
        """Search every chunk, in this process (``here``) and in the readers; return the results in order.

        A reader is sent chunks while it has fewer than :data:`IN_FLIGHT` unanswered; this process searches
        the next unsent chunk in between. When nothing is left to send, this process searches the newest chunk
        a reader holds beyond the one it is on, and every chunk of a reader still loading its copy, rather than
        wait; the readers' late replies are read and dropped. A reader that fails is stopped and its chunks
        searched here.
        """
        self._call += 1
        call = self._call
        results: list[Hits | None] = [None] * len(chunks)
        todo = deque(range(len(chunks)))

        def mine(r: _Reader) -> list[int]:
            return [i for c, i in r.sent if c == call and results[i] is None]

        def drop(r: _Reader) -> None:
            logger.warning("a search process stopped (exit %s); searching its part here", r.proc.poll())
            todo.extendleft(mine(r))
            r.sent.clear()
            r.close()
            self.readers.remove(r)

        def feed(r: _Reader) -> None:
            while len(r.sent) < IN_FLIGHT and todo:
                i = todo.pop()  # readers take from the end, this process from the start
                try:
                    _send(r.stdin, (call, i, spec, chunks[i]))
                except (OSError, ValueError):
                    todo.append(i)
                    drop(r)
                    return
                r.sent.append((call, i))

        def collect(r: _Reader) -> None:
            if not r.wait_ready():
                drop(r)
                return
            try:
                c, i, hits = _recv(r.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                drop(r)
                return
            r.sent.popleft()
            if c != call or results[i] is not None:
                return  # a chunk of an earlier call, or one searched here meanwhile
            if isinstance(hits, str):  # the reader's Edge raised: search it here, where errors are reported
                logger.warning("a search process failed on a chunk (%s); searching it here", hits)
                todo.appendleft(i)
                return
            results[i] = hits
            self.answered += 1

        for r in list(self.readers):
            if r.proc.poll() is not None:
                drop(r)
        while True:
            for r in list(self.readers):
                while r in self.readers and (r.sent or not r.ready) and _readable(r.stdout):
                    if r.ready:
                        collect(r)
                    elif not r.wait_ready():
                        drop(r)
                if r in self.readers:
                    feed(r)
            if todo:
                i = todo.popleft()
                if results[i] is None:
                    results[i] = here(chunks[i])
                continue
            waiting = [r for r in self.readers if mine(r)]
            if not waiting:
                break
            ready = [r for r in waiting if r.ready]
            if ready:
                held = max((mine(r) for r in ready), key=len)
                if len(held) > 1:  # search the reader's newest chunk here rather than wait for both
                    results[held[-1]] = here(chunks[held[-1]])
                    continue
                collect(next(r for r in ready if mine(r)))  # it answers within one chunk's time
                continue
            for r in waiting:  # still loading its copy: search its chunks here instead of waiting
                for i in mine(r):
                    results[i] = here(chunks[i])
        return [res for res in results if res is not None]

    def close(self) -> None:
        """Stop every reader (each exits when its stdin closes)."""
        for r in self.readers:
            r.close()
        self.readers.clear()


# ------------------------------------------------------------------------------------------ the reader side


def _serve(source: str, shard_dir: str) -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    _widen(stdout)
    try:
        shutil.rmtree(shard_dir, ignore_errors=True)
        copy_sparse(Path(source), Path(shard_dir))
        shard = qe.EdgeShard.load(shard_dir)
    except Exception as e:  # told to the parent, which searches without this reader
        _send(stdout, str(e).splitlines()[0] if str(e) else type(e).__name__)
        return 1
    _send(stdout, "ready")
    while True:
        try:
            call, i, spec, rows = _recv(stdin)
        except EOFError:
            break
        try:
            hits: Hits | str = search_shard(shard, rows, spec)
        except Exception as e:  # reported to the parent, which searches the chunk itself
            hits = str(e).splitlines()[0] if str(e) else type(e).__name__
        try:
            _send(stdout, (call, i, hits))
        except (BrokenPipeError, OSError):
            break
    shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], sys.argv[2]))
