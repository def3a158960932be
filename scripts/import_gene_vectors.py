"""Load gene vectors computed elsewhere (e.g. by ``scripts/gpu_check.py`` on a GPU) into a store's gene cache.

Usage: ``python scripts/import_gene_vectors.py STORE DIR [--encoder minilm] [--species human]``, where DIR
holds ``gene_symbols.json`` and ``gene_vectors_*.npy`` in order. Each gene's current description is
looked up and hashed exactly as :class:`indexer.GeneIndex` does, so the store treats the imported vectors as
its own cache: a later run embeds only genes that are missing or whose text changed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from indexer import GeneCatalog, GeneIndex, get_encoder, open_store
from indexer.genes import GENE_VECTOR, gene_point_id


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("store")
    ap.add_argument("src")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--species", default="human")
    args = ap.parse_args()
    src = Path(args.src)
    symbols = json.loads((src / "gene_symbols.json").read_text())
    parts = sorted(src.glob("gene_vectors_*.npy"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    vectors = np.vstack([np.load(p) for p in parts]).astype(np.float32)
    assert len(symbols) == len(vectors), "symbols and vectors differ in length"
    catalog = GeneCatalog.load(args.species)
    with open_store(args.store) as store:
        index = GeneIndex(store, get_encoder(args.encoder), catalog)
        index._ensure_collection()
        texts = catalog.gene_texts(symbols)
        keep = [i for i, t in enumerate(texts) if t is not None]
        for start in range(0, len(keep), 1000):
            sel = keep[start : start + 1000]
            store.upsert(
                index.collection,
                ids=[gene_point_id(args.species, symbols[i]) for i in sel],
                vectors={GENE_VECTOR: vectors[sel]},
                payloads=[index._record(texts[i]).model_dump() for i in sel],
            )
        store.flush()
        print(f"imported {len(keep)} {args.encoder} gene vectors into {args.store} ({index.collection})")


if __name__ == "__main__":
    main()
