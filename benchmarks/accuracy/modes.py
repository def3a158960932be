"""Issue 9: which cell-vector mode should be cellvec's default? Every variant against the expression baselines.

Same seeded stratified 80/20 splits for every method; k chosen by 5-fold CV on the reference split only;
cellvec variants built and annotated through the real library (Qdrant Edge store). Prints one JSON line per
(dataset, seed, method) and a summary table (mean ± sd of accuracy and macro-F1).

Usage: ``python scripts/accuracy_modes.py --datasets pbmc68k,voigt-fine --seeds 3 --store DIR``
(the store should hold the MiniLM gene cache, e.g. one built by ``cellvec genes index``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from benchmarks.accuracy import CellTypistBaseline, CellvecMethod, LogRegBaseline, SeuratLike, load_dataset
from benchmarks.accuracy._protocol import cv_k_accuracy, select_k
from indexer import open_store
from indexer.cells import score, stratified_split
from schemas import CellVectorSpec, ExpressionParams, PoolingParams, RefineParams

SUPCON = RefineParams(method="supcon", epochs=60, patience=8)


def variants(encoder: str) -> dict[str, CellVectorSpec]:
    """The cellvec variants measured (name -> spec)."""
    pca = ExpressionParams(head="pca")
    head = ExpressionParams(head="pca+logistic")
    out = {
        "paper": CellVectorSpec(mode="paper", encoder=encoder),
        "paper+supcon": CellVectorSpec(mode="paper", encoder=encoder, refine=SUPCON),
        "paper[random:384]": CellVectorSpec(mode="paper", encoder="random:384"),
        "paper-idf-whiten-nomt": CellVectorSpec(
            mode="paper",
            encoder=encoder,
            pooling=PoolingParams(idf=True, whiten=True, exclude_mito=True, exclude_ribo=True),
        ),
        "genept": CellVectorSpec(mode="genept", encoder=encoder),
        "expression-pca": CellVectorSpec(mode="expression", encoder=encoder, expression=pca),
        "expression": CellVectorSpec(mode="expression", encoder=encoder, expression=head),
        # The full 384-d text view (the default before text_dims); the default projects it on 8 directions.
        "hybrid0.2": CellVectorSpec(mode="hybrid", encoder=encoder, expression=head, text_dims=None),
        "hybrid0.4": CellVectorSpec(mode="hybrid", encoder=encoder, expression=head, text_weight=0.4, text_dims=None),
        "hybrid0.2[random:384]": CellVectorSpec(mode="hybrid", encoder="random:384", expression=head, text_dims=None),
        # Issue 17: the stored vector's size (text view projected on its top principal directions; fewer PCs).
        **{
            f"hybrid0.2-t{d}": CellVectorSpec(mode="hybrid", encoder=encoder, expression=head, text_dims=d)
            for d in (4, 8, 16, 32, 64)
        },
        "hybrid0.2-t16-pc30": CellVectorSpec(
            mode="hybrid", encoder=encoder, expression=head.model_copy(update={"n_components": 30}), text_dims=16
        ),
        "hybrid0.2-t8-pc30": CellVectorSpec(
            mode="hybrid", encoder=encoder, expression=head.model_copy(update={"n_components": 30}), text_dims=8
        ),
        "hybrid0.2+supcon": CellVectorSpec(
            mode="hybrid", encoder=encoder, expression=head, text_dims=None, refine=SUPCON
        ),
    }
    return out


def run_method(method, ref, query, y_ref, y_query, seed):
    t0 = time.perf_counter()
    fitted = method.fit(ref, y_ref)
    k = None
    if fitted is not None:
        k = select_k(cv_k_accuracy(*fitted, seed=seed))
    pred = method.predict(query, k=k)
    sc = score(y_query, pred.labels)
    stored = getattr(method, "ref_vectors_", None)
    dim = None if stored is None else int(stored.shape[1])
    seconds = time.perf_counter() - t0
    return {"accuracy": sc.accuracy, "macro_f1": sc.macro_f1, "k": k, "dim": dim, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="pbmc68k,voigt-coarse,voigt-fine,voigt-cross-donor,voigt-paper-sizes")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--store", required=True)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--only", default=None, help="comma-separated subset of method names")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    warnings.simplefilter("ignore")
    rows = []
    with open_store(args.store) as store:
        for ds_name in args.datasets.split(","):
            ds = load_dataset(ds_name)
            seeds = [0] if ds.query is not None else list(range(args.seeds))
            for seed in seeds:
                if ds.query is not None:
                    ref, query = ds.adata, ds.query
                else:
                    r, q = stratified_split(ds.adata.obs[ds.label_key].to_numpy(), seed=seed)
                    ref, query = ds.adata[r].copy(), ds.adata[q].copy()
                y_ref = ref.obs[ds.label_key].astype(str).to_numpy()
                y_query = query.obs[ds.label_key].astype(str).to_numpy()
                methods = {
                    "seurat-like": SeuratLike(seed=seed),
                    "celltypist": CellTypistBaseline(n_jobs=2),
                    "logreg": LogRegBaseline(),
                }
                for name, spec in variants(args.encoder).items():
                    m = CellvecMethod(
                        mode=spec.mode,
                        encoder=spec.encoder,
                        supcon=False,
                        store=store,
                        species=ds.species,
                        tag=f"acc_{ds_name}_{name}",
                        seed=seed,
                    )
                    m.spec = spec.model_copy(
                        update={
                            "species": ds.species,
                            "refine": spec.refine.model_copy(update={"seed": seed}),
                        }
                    )
                    m.ref_name = m.ref_name.replace("acc_", "a").replace("+", "_")[:60]
                    methods[f"cellvec-{name}"] = m
                for name, method in methods.items():
                    if only and name not in only and name.removeprefix("cellvec-") not in only:
                        continue
                    try:
                        out = run_method(method, ref, query, y_ref, y_query, seed)
                    finally:
                        close = getattr(method, "close", None)
                        if close:
                            close()
                    row = {"dataset": ds_name, "seed": seed, "method": name, **out}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| dataset | method | stored dim | accuracy | macro F1 |\n|---|---|---|---|---|")
    for ds_name in dict.fromkeys(r["dataset"] for r in rows):
        for name in dict.fromkeys(r["method"] for r in rows if r["dataset"] == ds_name):
            sel = [r for r in rows if r["dataset"] == ds_name and r["method"] == name]
            acc = np.array([r["accuracy"] for r in sel])
            f1 = np.array([r["macro_f1"] for r in sel])
            dim = sel[0].get("dim") or "-"
            acc_s, f1_s = f"{acc.mean():.3f} ± {acc.std():.3f}", f"{f1.mean():.3f} ± {f1.std():.3f}"
            print(f"| {ds_name} | {name} | {dim} | {acc_s} | {f1_s} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
