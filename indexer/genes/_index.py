"""The gene collection: one Qdrant collection per encoder, filled lazily and never embedded twice."""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer._errors import TruncationWarning
from schemas import GeneRecord, Species

if TYPE_CHECKING:
    from indexer.encoders import Encoder
    from indexer.genes._catalog import GeneCatalog
    from indexer.store._protocol import VectorStore

logger = logging.getLogger(__name__)

_NAMESPACE = uuid.UUID("6f1c7a2e-3d4b-5c6d-8e9f-0a1b2c3d4e5f")
GENE_VECTOR = "gene"
"""Name of the vector in a gene collection."""


def gene_point_id(species: str, symbol: str) -> str:
    """Return the deterministic point id of a gene: a UUIDv5 of ``"species:symbol"``."""
    return str(uuid.uuid5(_NAMESPACE, f"gene:{species}:{symbol}"))


def gene_collection_name(encoder_id: str) -> str:
    """Return the collection name that holds the vectors of one encoder."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder_id).strip("_")
    digest = hashlib.sha256(encoder_id.encode()).hexdigest()[:8]
    return f"genes__{slug}__{digest}"


def text_sha256(text: str) -> str:
    """Return the SHA-256 of a gene text (the cache key together with the encoder)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class PendingGenes:
    """Gene vectors embedded through a read-only store, not yet stored.

    :func:`save_pending_genes` stores them once the store can be opened for writing, so that the next run
    does not embed them again.

    Attributes
    ----------
    collection
        Gene collection they belong to.
    dim
        Vector dimension.
    ids
        Point ids.
    vectors
        ``len(ids) × dim`` float32 vectors.
    payloads
        Gene records, as stored.
    """

    collection: str
    dim: int
    ids: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: PendingGenes | None) -> None:
        """Add the genes of ``other`` (same collection) that are not pending yet."""
        if other is None:
            return
        seen = set(self.ids)
        for i, v, pl in zip(other.ids, other.vectors, other.payloads, strict=True):
            if i not in seen:
                seen.add(i)
                self.ids.append(i)
                self.vectors.append(v)
                self.payloads.append(pl)


def save_pending_genes(store: VectorStore, pending: PendingGenes) -> int:
    """Store gene vectors embedded while the store was read-only; return how many were written.

    Parameters
    ----------
    store
        The same store, opened for writing.
    pending
        What :attr:`GeneIndex.pending` collected.
    """
    if not len(pending):
        return 0
    if not store.has_collection(pending.collection):
        store.create_collection(
            pending.collection,
            vectors={GENE_VECTOR: pending.dim},
            payload_indexes={"symbol": "keyword", "species": "keyword"},
        )
    for start in range(0, len(pending), 4096):
        sl = slice(start, start + 4096)
        store.upsert(
            pending.collection,
            ids=pending.ids[sl],
            vectors={GENE_VECTOR: np.vstack(pending.vectors[sl]).astype(np.float32)},
            payloads=pending.payloads[sl],
        )
    store.flush()
    logger.info("stored %d gene vectors embedded by a read-only run", len(pending))
    return len(pending)


class GeneIndex:
    """Gene vectors of one encoder and species, cached in a store.

    Parameters
    ----------
    store
        Where the gene collection lives.
    encoder
        The text encoder.
    catalog
        Gene descriptions of the species.

    Examples
    --------
    >>> index = GeneIndex(store, get_encoder("random:16"), GeneCatalog.load("human"))  # doctest: +SKIP
    >>> vectors, found = index.vectors(["CD3E", "MS4A1"])  # doctest: +SKIP
    """

    def __init__(self, store: VectorStore, encoder: Encoder, catalog: GeneCatalog) -> None:
        self.store = store
        self.encoder = encoder
        self.catalog = catalog
        self.collection = gene_collection_name(encoder.id)
        self.last_embedded = 0
        """Number of texts embedded by the last call (0 when everything was cached)."""
        self.total_embedded = 0
        """Number of texts embedded by every call so far."""
        self.pending = PendingGenes(self.collection, encoder.dim)
        """Vectors embedded while the store is read-only, for :func:`save_pending_genes`."""

    @property
    def species(self) -> Species:
        """Species of the catalog."""
        return self.catalog.species

    def _ensure_collection(self) -> None:
        if not self.store.has_collection(self.collection):
            self.store.create_collection(
                self.collection,
                vectors={GENE_VECTOR: self.encoder.dim},
                payload_indexes={"symbol": "keyword", "species": "keyword"},
            )

    def vectors(
        self,
        symbols: Sequence[str],
        *,
        progress: Callable[[int, int], None] | None = None,
        digests: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the vectors of the given genes, embedding only those not yet stored.

        Parameters
        ----------
        symbols
            Official symbols (``""`` entries are skipped).
        progress
            Called with ``(n_done, n_total)`` while texts are embedded.
        digests
            The catalog's :meth:`~GeneCatalog.text_digests` of ``symbols``, when the caller has them (a
            short list of names is not memoised, so computing them again would read the catalog).

        Returns
        -------
        ``(vectors, found)``: a float32 ``len(symbols) × dim`` array (zero rows for genes without text) and a
        boolean mask of the genes that have a vector.
        """
        from indexer.encoders import count_truncated, embed_texts

        symbols = [str(s) for s in symbols]
        dim = self.encoder.dim
        out = np.zeros((len(symbols), dim), dtype=np.float32)
        found = np.zeros(len(symbols), dtype=bool)
        wanted = sorted({s for s in symbols if s})
        # Stored vectors are checked against the digests of today's texts (memoised by the catalog), so a
        # dataset whose gene vectors are all stored reads no description text.
        if digests is None:
            digest_of = dict(zip(wanted, self.catalog.text_digests(wanted).tolist(), strict=True))
        else:
            digest_of = {s: str(d) for s, d in zip(symbols, digests, strict=True) if s}
        with_text = [s for s in wanted if digest_of[s]]
        ids = {s: gene_point_id(self.species, s) for s in with_text}
        stored: dict[str, np.ndarray] = {}
        if self.store.has_collection(self.collection) and with_text:
            for chunk in _chunks(with_text, 4096):
                for p in self.store.retrieve(
                    self.collection, [ids[s] for s in chunk], with_vectors=[GENE_VECTOR]
                ):
                    sym = p.payload.get("symbol")
                    if digest_of.get(sym) and p.payload.get("text_sha256") == digest_of[sym]:
                        stored[sym] = p.vectors[GENE_VECTOR]
        todo = [s for s in with_text if s not in stored]
        texts = dict(zip(todo, self.catalog.gene_texts(todo), strict=True))
        self.last_embedded = len(todo)
        self.total_embedded += len(todo)
        if todo:
            # A store opened read-only (annotate, search) cannot keep what it embeds: the vectors are
            # collected in ``pending`` for the caller to store once it can write (save_pending_genes).
            writable = not getattr(self.store, "read_only", False)
            if writable:
                self._ensure_collection()
            todo_texts = [texts[s].text for s in todo]  # type: ignore[union-attr]
            n_trunc = count_truncated(self.encoder, todo_texts)
            if n_trunc:
                warnings.warn(
                    f"{n_trunc} of {len(todo)} gene descriptions are longer than the {self.encoder.id} "
                    "window and were truncated.",
                    TruncationWarning,
                    stacklevel=2,
                )
            logger.info("embedding %d gene descriptions with %s", len(todo), self.encoder.id)

            def persist(vecs: np.ndarray, start: int, stop: int) -> None:
                part = todo[start:stop]
                if writable:
                    recs = [self._record(texts[s]) for s in part]  # type: ignore[arg-type]
                    self.store.upsert(
                        self.collection,
                        ids=[ids[s] for s in part],
                        vectors={GENE_VECTOR: vecs.astype(np.float32)},
                        payloads=[r.model_dump() for r in recs],
                    )
                    self.store.flush()
                else:
                    self.pending.ids.extend(ids[s] for s in part)
                    self.pending.vectors.extend(vecs.astype(np.float32))
                    self.pending.payloads.extend(
                        self._record(texts[s]).model_dump() for s in part  # type: ignore[arg-type]
                    )
                for s, v in zip(part, vecs, strict=True):
                    stored[s] = v
                if progress is not None:
                    progress(stop, len(todo))

            embed_texts(self.encoder, todo_texts, on_batch=persist)
        pos: dict[str, list[int]] = {}
        for i, s in enumerate(symbols):
            pos.setdefault(s, []).append(i)
        for s, v in stored.items():
            for i in pos.get(s, ()):
                out[i] = v
                found[i] = True
        return out, found

    def _record(self, gt: object) -> GeneRecord:
        return GeneRecord(
            symbol=gt.symbol,  # type: ignore[attr-defined]
            species=gt.species,  # type: ignore[attr-defined]
            entrez_id=gt.entrez_id,  # type: ignore[attr-defined]
            text=gt.text,  # type: ignore[attr-defined]
            text_sha256=text_sha256(gt.text),  # type: ignore[attr-defined]
            source=gt.source,  # type: ignore[attr-defined]
            encoder=self.encoder.id,
        )


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
