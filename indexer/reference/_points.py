"""Label and cell id of every point of a reference version, by point id: annotate reads no payloads.

A search hit costs Qdrant Edge ~6 µs more with its payload than without, then a Python dict: measured on
the Voigt reference (1,228 queries, the calibrated rule's 30 neighbours each), 0.63 s with the label and
cell id payloads against 0.41 s with ids only (``benchmarks/scale/bench_hit_cost.py``). So every version
stores a table of its points (artefact ``points-<sha12>.npz``, its hash in the build record): the 128-bit
point ids, sorted, each with a label code and the cell id. Annotate searches with ids only and looks the
hits up in it.

The table follows the collection through every edit, written so that an interrupted edit never gives a
wrong label: cells are added to the collection before the table (a hit the table lacks is looked up in its
payload, :meth:`PointTable.lookup` reports it), removed from the collection before the table (a row no hit
reaches is harmless), and a relabel renames the label in the table before the payloads (the label the user
asked for, already, on cells whose payload still says the old one). Versions built before the table have
none and are annotated from payloads as before.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

POINTS_PREFIX = "points-"


def points_file(names: Iterable[str]) -> str | None:
    """Return the point table among a version's artefact file names (``None`` when it has none)."""
    for name in names:
        if name.startswith(POINTS_PREFIX) and name.endswith(".npz"):
            return name
    return None


def id_words(ids: Sequence[str]) -> np.ndarray:
    """Return canonical UUID strings (``8-4-4-4-12`` hex) as an ``(n, 2)`` array of big-endian uint64 words."""
    if not ids:
        return np.zeros((0, 2), dtype=np.uint64)
    try:
        raw = bytes.fromhex("".join(ids).replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 16 * len(ids):
        msg = f"point ids must be UUIDs (got {ids[0]!r}, ...)"
        raise ValueError(msg)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)


def int_words(ids: Sequence[int]) -> np.ndarray:
    """Return 128-bit integer point ids (``UUID.int``, as searches return them) as :func:`id_words` does."""
    mask = (1 << 64) - 1
    n = len(ids)
    out = np.empty((n, 2), dtype=np.uint64)
    out[:, 0] = np.fromiter((i >> 64 for i in ids), dtype=np.uint64, count=n)
    out[:, 1] = np.fromiter((i & mask for i in ids), dtype=np.uint64, count=n)
    return out


@dataclass(frozen=True)
class PointTable:
    """Every point of a version: its id (two uint64 words, rows sorted), label code and cell id.

    Attributes
    ----------
    words
        ``(n, 2)`` point ids as big-endian uint64 words, sorted by the first word, then the second.
    codes
        Label code of each row, an index into ``labels``.
    labels
        Label names (sorted, unique).
    cell_text
        The cell ids, UTF-8, one after another.
    cell_ends
        End offset of each row's cell id in ``cell_text``.
    """

    words: np.ndarray
    codes: np.ndarray
    labels: np.ndarray
    cell_text: bytes
    cell_ends: np.ndarray

    @classmethod
    def build(cls, point_ids: Sequence[str], labels: Sequence[str], cell_ids: Sequence[str]) -> PointTable:
        """Make the table of these points; a point id given twice keeps its last row (as an upsert does)."""
        return cls.from_words(id_words(list(point_ids)), labels, cell_ids)

    @classmethod
    def from_words(cls, words: np.ndarray, labels: Sequence[str], cell_ids: Sequence[str]) -> PointTable:
        """:meth:`build` from ids already split into words (:func:`id_words`)."""
        labels_arr = np.asarray([str(x) for x in labels], dtype=object)
        cells = [str(c) for c in cell_ids]
        if not len(words) == len(labels_arr) == len(cells):
            msg = f"{len(words)} point ids, {len(labels_arr)} labels and {len(cells)} cell ids"
            raise ValueError(msg)
        # the last occurrence of each id: unique over the reversed rows
        _, first = np.unique(words[::-1], axis=0, return_index=True)
        keep = np.sort(len(words) - 1 - first)
        return cls._from_rows(words[keep], labels_arr[keep], [cells[i] for i in keep])

    @classmethod
    def _from_rows(cls, words: np.ndarray, labels: np.ndarray, cells: list[str]) -> PointTable:
        order = np.lexsort((words[:, 1], words[:, 0])) if len(words) else np.zeros(0, dtype=np.int64)
        names, codes = np.unique(labels.astype(str), return_inverse=True)
        encoded = [cells[i].encode() for i in order]
        ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
        return cls(
            words=np.ascontiguousarray(words[order]),
            codes=codes.reshape(-1)[order].astype(np.int32),
            labels=names.astype(object),
            cell_text=b"".join(encoded),
            cell_ends=ends,
        )

    def __len__(self) -> int:
        return len(self.words)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Return each id's row (``-1`` for an id the table lacks)."""
        return self._rows(id_words(list(ids)))

    def _rows(self, want: np.ndarray) -> np.ndarray:
        hi = self.words[:, 0]
        left = np.searchsorted(hi, want[:, 0], side="left")
        rows = np.full(len(want), -1, dtype=np.int64)
        inside = left < len(hi)
        hit = inside.copy()
        hit[inside] = (hi[left[inside]] == want[inside, 0]) & (self.words[left[inside], 1] == want[inside, 1])
        rows[hit] = left[hit]
        # ids whose first word is shared with another point (1 in ~10^13 pairs) or absent: check them one by one
        for j in np.flatnonzero(~hit & inside):
            r = int(left[j])
            while r < len(hi) and hi[r] == want[j, 0]:
                if self.words[r, 1] == want[j, 1]:
                    rows[j] = r
                    break
                r += 1
        return rows

    def cell_ids(self, rows: np.ndarray) -> list[str]:
        """Return the cell ids of these rows."""
        ends = self.cell_ends
        text = self.cell_text
        return [text[(ends[r - 1] if r else 0) : ends[r]].decode() for r in rows.tolist()]

    def lookup(self, ids: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Return the labels and cell ids of these points, and a mask of the ids the table lacks.

        Labels and cell ids of missing ids are ``""``.
        """
        return self.lookup_words(id_words(list(ids)))

    def lookup_ints(self, ids: Sequence[int]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """:meth:`lookup` of 128-bit integer ids (``UUID.int``, as searches return them)."""
        return self.lookup_words(int_words(ids))

    def lookup_words(self, words: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
        """:meth:`lookup` of ids already split into words (:func:`id_words`, :func:`int_words`)."""
        rows = self._rows(words)
        found = rows >= 0
        labels = np.full(len(rows), "", dtype=object)
        labels[found] = self.labels[self.codes[rows[found]]]
        cells = np.full(len(rows), "", dtype=object)
        # each reference cell is decoded once, however many queries it neighbours
        unique, inverse = np.unique(rows[found], return_inverse=True)
        cells[found] = np.asarray(self.cell_ids(unique), dtype=object)[inverse.reshape(-1)]
        return labels, cells.tolist(), ~found

    # ------------------------------------------------------------------------------------------ edits

    def with_table(self, new: PointTable) -> PointTable:
        """Return the table with the rows of ``new`` added (replacing rows of the same ids)."""
        old_rows = np.flatnonzero(new._rows(self.words) < 0)
        words = np.concatenate([self.words[old_rows], new.words])
        labs = np.concatenate([self.labels[self.codes[old_rows]], new.labels[new.codes]])
        cells = self.cell_ids(old_rows) + new.cell_ids(np.arange(len(new)))
        return PointTable._from_rows(words, labs, cells)

    def keeping(self, point_ids: Sequence[str]) -> PointTable:
        """Return the table restricted to these points (those it has)."""
        rows = self.rows_of(list(point_ids))
        rows = np.unique(rows[rows >= 0])
        return PointTable._from_rows(self.words[rows], self.labels[self.codes[rows]], self.cell_ids(rows))

    def renamed(self, old: str, new: str) -> PointTable:
        """Return the table with label ``old`` called ``new`` (a merge when ``new`` exists)."""
        names = np.where(self.labels == old, new, self.labels).astype(object)
        uniq, inverse = np.unique(names.astype(str), return_inverse=True)
        return PointTable(
            words=self.words,
            codes=inverse.reshape(-1)[self.codes].astype(np.int32),
            labels=uniq.astype(object),
            cell_text=self.cell_text,
            cell_ends=self.cell_ends,
        )

    # ------------------------------------------------------------------------------------------ bytes

    def to_bytes(self) -> bytes:
        """Serialise (``.npz``, no pickle)."""
        buf = io.BytesIO()
        np.savez(
            buf,
            words=self.words,
            codes=self.codes,
            labels=np.asarray(self.labels, dtype=str),
            cell_text=np.frombuffer(self.cell_text, dtype=np.uint8),
            cell_ends=self.cell_ends,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> PointTable:
        """Read :meth:`to_bytes` output."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(
                words=z["words"].astype(np.uint64),
                codes=z["codes"].astype(np.int32),
                labels=z["labels"].astype(object),
                cell_text=z["cell_text"].tobytes(),
                cell_ends=z["cell_ends"].astype(np.int64),
            )


def points_file_name(data: bytes) -> str:
    """Return the artefact file name of a table's bytes: ``points-<first 12 hex of their SHA-256>.npz``."""
    return f"{POINTS_PREFIX}{hashlib.sha256(data).hexdigest()[:12]}.npz"
