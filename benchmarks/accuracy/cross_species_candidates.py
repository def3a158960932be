"""The few cross-species settings tried for cellvec, on the bench's protocol (docs/species.md, "Candidates").

Each candidate changes one setting of the default hybrid spec; the reference is built as ``cellvec bench
--query-adata`` builds it across species (cut to the query's genes: ``build_reference(..., genes=query)``), k
is chosen by cross-validation on the reference's own vectors, and the query is annotated in its own species
(mapped by ``annotate``; labelled by the class-balanced vote over the calibration's k neighbours). The head's
C is set explicitly in every row. The candidates were scored on the two queries' labels: choosing among them
would be tuning on those labels, so none is the product's default (which keeps the within-species C = 1); the
list shows how much the settings move the figures.

Run after ``python -m benchmarks.accuracy.cross_species --write-inputs xs``::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.cross_species_candidates --inputs xs --encoder random:384
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

CANDIDATES: dict[str, dict[str, Any]] = {
    "C=1 (the within-species default)": {"expression": {"c": 1.0}},
    "C=0.3": {"expression": {"c": 0.3}},
    "C=0.1": {"expression": {"c": 0.1}},
    "C=1, 30 PCs": {"expression": {"c": 1.0, "n_components": 30}},
    "C=1, 20 PCs": {"expression": {"c": 1.0, "n_components": 20}},
    "C=1, 500 HVGs": {"expression": {"c": 1.0, "n_genes": 500}},
    "C=1, text weight 0.1": {"expression": {"c": 1.0}, "text_weight": 0.1},
    "C=1, text weight 0": {"expression": {"c": 1.0}, "text_weight": 0.0},
}
"""Candidate name -> spec changes (``expression`` fields go into :class:`schemas.ExpressionParams`)."""


def run(inputs: Path, *, encoder: str, store_path: str) -> dict[str, dict[str, tuple[float, float]]]:
    """Return ``{candidate: {direction: (macro-F1, accuracy)}}`` for both directions."""
    from benchmarks.accuracy import from_files
    from benchmarks.accuracy._cellvec import CellvecMethod
    from benchmarks.accuracy._protocol import K_GRID, cv_k_accuracy, select_k
    from indexer import open_store
    from indexer.cells import score
    from schemas import ExpressionParams

    directions = {
        "mouse ref -> human query": (inputs / "mouse.h5ad", inputs / "human.h5ad"),
        "human ref -> mouse query": (inputs / "human.h5ad", inputs / "mouse_query.h5ad"),
    }
    data = {d: from_files(a, label_key="label", query_path=q) for d, (a, q) in directions.items()}
    out: dict[str, dict[str, tuple[float, float]]] = {}
    store = open_store(store_path)
    try:
        for name, change in CANDIDATES.items():
            out[name] = {}
            for d, ds in data.items():
                assert ds.native_query is not None
                method = CellvecMethod(
                    mode="hybrid", encoder=encoder, supcon=False, store=store, species=ds.species, tag="cand"
                )
                update: dict[str, Any] = {"expression": ExpressionParams(**change["expression"])}
                if "text_weight" in change:
                    update["text_weight"] = change["text_weight"]
                method.spec = method.spec.model_copy(update=update)
                method.genes = ds.native_query
                y_ref = ds.adata.obs["label"].astype(str).to_numpy()
                vecs, labs = method.fit(ds.adata, y_ref)
                k = select_k(cv_k_accuracy(vecs, labs, k_grid=K_GRID, n_folds=5, seed=0))
                pred = method.predict(ds.native_query, k=k)
                method.close()
                s = score(ds.native_query.obs["label"].astype(str).to_numpy(), pred.labels)
                out[name][d] = (s.macro_f1, s.accuracy)
            row = " | ".join(f"{f:.3f} / {a:.3f}" for f, a in out[name].values())
            print(f"| {name} | {row} |", flush=True)
    finally:
        store.close()
    return out


def main() -> None:
    """Print the candidates' table (macro-F1 / accuracy per direction)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", required=True, help="Folder written by cross_species --write-inputs.")
    parser.add_argument("--encoder", default="random:384", help="Gene text encoder.")
    parser.add_argument("--store", default=":memory:", help="Store (a copy holding cached gene vectors helps).")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print("| candidate | mouse ref -> human query | human ref -> mouse query |\n|---|---|---|")
    run(Path(args.inputs), encoder=args.encoder, store_path=args.store)


if __name__ == "__main__":
    main()
