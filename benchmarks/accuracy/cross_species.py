"""Cross-species annotation through HCOP orthologs: mouse actinn (Tabula Muris immune) <-> human pbmc68k_reduced.

For each direction, cellvec builds a reference from one species without being told the species, and
annotates the other species' cells with :func:`annotator.annotate`, which infers the query's species and maps
it onto the reference species' genes (``docs/species.md``). Two baselines run on the same ortholog-mapped
genes (the reference's genes that the mapped query covers, :func:`indexer.genes.map_adata`), log-normalised:
a logistic regression (C = 1) and a Seurat-like PCA + kNN (the reference's top-dispersion genes, z-scored with
the reference's statistics, 30 components, cosine 10-NN vote).

Labels (:data:`PBMC_TO_COARSE`): pbmc68k ``bulk_labels`` CD19+ B -> B cell, CD56+ NK -> NK cell, CD14+
Monocyte -> Monocyte, the five CD4+/CD8+ T populations -> T cell; Dendritic and CD34+ are dropped (447 cells).
actinn ``cell_type`` as it is; its Granulocytes have no pbmc counterpart, so they stay in the mouse reference
(a Granulocyte call on a human cell counts as an error) and are dropped from the mouse query (932 cells).
Macro-F1 is over the query's own classes.

Each cellvec mode runs twice: on the reference's whole panel, and with the reference restricted to the genes the
query has (``build_reference(..., genes=query)``, ``cellvec reference build --genes-of QUERY``), the setting
the README recommends for such queries.

Run (about 1 minute with random:384 on 2 cores)::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.cross_species --encoder random:384

The same comparison through ``cellvec bench`` (the table in docs/species.md): write the harmonised inputs, then
one bench run per direction::

    python -m benchmarks.accuracy.cross_species --write-inputs xs
    cellvec bench --adata xs/mouse.h5ad --query-adata xs/human.h5ad --label-key label --seeds 1 \
        --methods seurat-like,logreg,cellvec-hybrid,cellvec-expression --encoders minilm --no-supcon --out xs/m2h
    cellvec bench --adata xs/human.h5ad --query-adata xs/mouse_query.h5ad --label-key label --seeds 1 \
        --methods seurat-like,logreg,cellvec-hybrid,cellvec-expression --encoders minilm --no-supcon --out xs/h2m
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

PBMC_TO_COARSE = {
    "CD19+ B": "B cell",
    "CD56+ NK": "NK cell",
    "CD14+ Monocyte": "Monocyte",
    "CD4+/CD25 T Reg": "T cell",
    "CD8+ Cytotoxic T": "T cell",
    "CD8+/CD45RA+ Naive Cytotoxic": "T cell",
    "CD4+/CD45RO+ Memory": "T cell",
    "CD4+/CD45RA+/CD25- Naive T": "T cell",
}
"""pbmc68k_reduced ``bulk_labels`` -> the coarse types actinn has (Dendritic and CD34+ have none)."""

ACTINN = "datasets/actinn_tabula_muris_immune.h5ad"


def load_mouse(data_dir: Path) -> ad.AnnData:
    """Return actinn's 1,000 mouse immune cells (raw counts) with ``obs['label']``."""
    a = ad.read_h5ad(Path(data_dir) / ACTINN)
    a.obs["label"] = a.obs["cell_type"].astype(str)
    return a


def load_human() -> ad.AnnData:
    """Return pbmc68k_reduced ``.raw`` (log-normalised) with harmonised ``obs['label']``, unmapped types dropped."""
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = sc.datasets.pbmc68k_reduced()
    h = p.raw.to_adata()
    h.obs["label"] = p.obs["bulk_labels"].astype(str).map(PBMC_TO_COARSE)
    return h[h.obs["label"].notna()].copy()


def scores(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Macro-F1 over the query's own classes and accuracy."""
    from sklearn.metrics import accuracy_score, f1_score

    classes = sorted(set(truth))
    return {
        "macro_f1": float(f1_score(truth, pred, labels=classes, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(truth, pred)),
    }


def logreg(xr: sp.csr_matrix, yr: np.ndarray, xq: sp.csr_matrix) -> np.ndarray:
    """Logistic regression, C = 1."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(xr, yr)
    return model.predict(xq)


def pca_knn(xr: sp.csr_matrix, yr: np.ndarray, xq: sp.csr_matrix, *, k: int = 10, n_hvg: int = 2000) -> np.ndarray:
    """Seurat-like: reference HVGs by dispersion, z-scored with the reference's statistics, PCA, cosine kNN."""
    from sklearn.utils.extmath import randomized_svd

    mean = np.asarray(xr.mean(axis=0)).ravel()
    var = np.asarray(xr.multiply(xr).mean(axis=0)).ravel() - mean**2
    disp = np.divide(var, mean, out=np.zeros_like(var), where=mean > 1e-6)
    hvg = np.sort(np.argsort(-disp)[: min(n_hvg, xr.shape[1])])
    r, q = xr[:, hvg].toarray(), xq[:, hvg].toarray()
    mu, sd = r.mean(0), r.std(0)
    sd[sd < 1e-6] = 1
    zr, zq = np.clip((r - mu) / sd, -10, 10), np.clip((q - mu) / sd, -10, 10)
    _, _, vt = randomized_svd(zr, n_components=min(30, zr.shape[0] - 1, zr.shape[1]), random_state=0)
    pr, pq = zr @ vt.T, zq @ vt.T
    pr /= np.linalg.norm(pr, axis=1, keepdims=True) + 1e-12
    pq /= np.linalg.norm(pq, axis=1, keepdims=True) + 1e-12
    nn = np.argsort(-(pq @ pr.T), axis=1)[:, :k]
    labels, codes = np.unique(yr, return_inverse=True)
    votes = np.zeros((pq.shape[0], labels.size))
    np.add.at(votes, (np.repeat(np.arange(pq.shape[0]), k), codes[nn].ravel()), 1)
    return labels[votes.argmax(1)]


def direction(name: str, ref: ad.AnnData, query: ad.AnnData, *, encoder: str, modes: list[str], data_dir: Path) -> dict:
    """Build ``ref`` (species inferred), annotate ``query`` (mapped by annotate), run the baselines."""
    from annotator import annotate
    from indexer import GeneCatalog, OrthologMap, build_reference, open_store
    from indexer.cells import log_normalise
    from indexer.genes import map_adata
    from schemas import CellVectorSpec

    truth = query.obs["label"].to_numpy().astype(str)
    out: dict = {"n_ref_cells": int(ref.n_obs), "n_query_cells": int(query.n_obs), "results": {}}
    store = open_store(":memory:")
    for i, mode in enumerate(modes):
        t0 = time.perf_counter()
        rec = build_reference(
            ref, store=store, name=f"ref{i}", label_key="label", spec=CellVectorSpec(mode=mode, encoder=encoder),
            data_dir=data_dir,
        )
        res = annotate(query, reference=f"ref{i}", store=store, k=10, data_dir=data_dir)
        s = scores(truth, res.labels.astype(str))
        s["seconds"] = time.perf_counter() - t0
        out["results"][f"cellvec_{mode}"] = s
        build_reference(
            ref, store=store, name=f"cut{i}", label_key="label", spec=CellVectorSpec(mode=mode, encoder=encoder),
            data_dir=data_dir, genes=query,
        )
        labels = annotate(query, reference=f"cut{i}", store=store, k=10, data_dir=data_dir).labels
        cut = scores(truth, labels.astype(str))
        out["results"][f"cellvec_{mode}_genes_of_query"] = cut
        print(f"[{name}] cellvec {mode:<12} genes of the query: F1 {cut['macro_f1']:.3f} acc {cut['accuracy']:.3f}")
        assert rec.species_call is not None
        assert res.params.query_species is not None
        assert res.params.orthologs is not None
        out["reference_species"] = rec.species_call.summary()
        out["query_species"] = res.params.query_species.summary()
        out["orthologs"] = res.params.orthologs.summary()
        print(f"[{name}] {out['reference_species']} / query {out['query_species']}")
        print(f"[{name}] {out['orthologs']}")
        print(f"[{name}] cellvec {mode:<12} macro-F1 {s['macro_f1']:.3f} acc {s['accuracy']:.3f}", flush=True)
    # Baselines on the same genes: the reference's genes that the ortholog-mapped query covers.
    rspecies, qspecies = rec.spec.species, res.params.query_species.species
    rsym = np.asarray(GeneCatalog.load(rspecies, data_dir=data_dir).resolve(list(ref.var_names)), dtype=object)
    omap = OrthologMap.load(qspecies, rspecies, data_dir=data_dir)  # type: ignore[arg-type]
    mapped, report = map_adata(query, omap, rsym)
    pos = {g: i for i, g in enumerate(rsym) if g}
    common = [g for g in mapped.var_names if g in pos]
    xr = log_normalise(sp.csr_matrix(ref.X, dtype=np.float32))[:, [pos[g] for g in common]]
    qpos = {g: i for i, g in enumerate(mapped.var_names)}
    xq = sp.csr_matrix(mapped.X)[:, [qpos[g] for g in common]]
    yr = ref.obs["label"].to_numpy().astype(str)
    out["n_common_genes"] = len(common)
    print(f"[{name}] baselines on {len(common):,} shared genes ({report.summary()})")
    for label, pred in (("logreg", logreg(xr, yr, xq)), ("pca_knn", pca_knn(xr, yr, xq))):
        s = scores(truth, pred)
        out["results"][label] = s
        print(f"[{name}] {label:<20} macro-F1 {s['macro_f1']:.3f} acc {s['accuracy']:.3f}")
    return out


def write_inputs(folder: Path, mouse: ad.AnnData, human: ad.AnnData) -> None:
    """Write the bench inputs: the mouse reference, the mouse query (no Granulocytes) and the human cells.

    Each file has the harmonised labels in ``obs['label']`` (:data:`PBMC_TO_COARSE`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "mouse.h5ad": mouse,
        "mouse_query.h5ad": mouse[mouse.obs["label"] != "Granulocyte"].copy(),
        "human.h5ad": human,
    }
    for name, adata in files.items():
        tmp = folder / f".{name}.tmp"
        adata.write_h5ad(tmp)
        tmp.replace(folder / name)  # a file is either absent or complete
        print(f"wrote {folder / name}: {adata.n_obs} cells x {adata.n_vars} genes")


def main() -> None:
    """Run both directions and print (and optionally write) the table."""
    from indexer import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="random:384", help="Gene text encoder (minilm for the default).")
    parser.add_argument("--modes", default="hybrid,expression", help="cellvec modes, comma-separated.")
    parser.add_argument("--out", default=None, help="Write the results as JSON here.")
    parser.add_argument(
        "--write-inputs",
        default=None,
        metavar="DIR",
        help="Only write the harmonised inputs of `cellvec bench` (mouse.h5ad, mouse_query.h5ad, human.h5ad) here.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = Settings().data_dir
    modes = args.modes.split(",")
    mouse, human = load_mouse(data_dir), load_human()
    if args.write_inputs:
        write_inputs(Path(args.write_inputs), mouse, human)
        return
    print(f"mouse actinn {mouse.shape}, human pbmc68k harmonised {human.shape}, encoder {args.encoder}")
    results = {
        "encoder": args.encoder,
        "mouse_ref_to_human_query": direction(
            "mouse ref -> human query", mouse, human, encoder=args.encoder, modes=modes, data_dir=data_dir
        ),
        "human_ref_to_mouse_query": direction(
            "human ref -> mouse query",
            human,
            mouse[mouse.obs["label"] != "Granulocyte"].copy(),
            encoder=args.encoder,
            modes=modes,
            data_dir=data_dir,
        ),
    }
    print("\n| method | mouse ref -> human query | human ref -> mouse query |\n|---|---|---|")
    a, b = results["mouse_ref_to_human_query"]["results"], results["human_ref_to_mouse_query"]["results"]
    for method in a:
        print(
            f"| {method} | {a[method]['macro_f1']:.3f} / {a[method]['accuracy']:.3f} | "
            f"{b[method]['macro_f1']:.3f} / {b[method]['accuracy']:.3f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
