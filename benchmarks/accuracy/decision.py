"""Issue 14: the calibrated decision rule against today's vote, through the real library.

For each dataset and seed: cellvec's seeded stratified 80/20 split, ``build_reference`` (which fits the
calibration on the reference split only), ``annotate`` with ``unknown_alpha``. Macro-F1 is over the true
classes, with "Unknown" counted as a wrong label (as in the issue-14 research). From the one annotation it
scores three decisions on the same neighbours:

* ``vote``: today's rule, the majority vote of the ``k`` reported neighbours (confidence = vote share);
* ``decide``: the calibrated, class-balanced winner, no rejection (confidence = calibrated probability);
* ``decide+novelty``: the same with the novelty check at ``alpha`` (Unknown counted wrong).

With ``--left-out`` every label in turn is removed from the reference (leave-one-type-out): it reports the
share of the missing type's query cells called Unknown and the share of the known cells called Unknown.

Prints one JSON line per (dataset, seed[, left-out], method) and a markdown table of means.

Usage::

    OMP_NUM_THREADS=2 python -m benchmarks.accuracy.decision --datasets pbmc68k,voigt-fine,voigt-coarse \
        --seeds 1 --store /tmp/decide-store [--encoder random:384] [--alpha 0.01] [--left-out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from indexer.cells import decide, stratified_split

if TYPE_CHECKING:
    from annotator import AnnotationResult
    from benchmarks.accuracy import BenchDataset
    from indexer import VectorStore

NOVEL = "unlike any reference cell of "


def ece(p: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Return the expected calibration error over ``bins`` equal-width confidence bins."""
    p = np.asarray(p, dtype=np.float64)
    b = np.minimum((p * bins).astype(int), bins - 1)
    out = 0.0
    for i in range(bins):
        sel = b == i
        if sel.any():
            out += sel.mean() * abs(p[sel].mean() - correct[sel].mean())
    return float(out)


def _plain(adata: ad.AnnData, labels: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame(index=adata.obs_names)
    if labels is not None:
        obs["label"] = np.asarray(labels).astype(str)
    return ad.AnnData(X=adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names))


def three_decisions(res: AnnotationResult, alpha: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Labels and confidences of the vote, the calibrated winner, and the winner with novelty."""
    labs = np.asarray(res.neighbour_labels).astype(str)
    names, inv = np.unique(labs, return_inverse=True)
    codes = inv.reshape(labs.shape)
    if names.size and names[0] == "":
        codes, names = codes - 1, names[1:]
    d = decide(codes, np.nan_to_num(res.neighbour_scores), n_labels=max(names.size, 1))
    vote_labels = np.where(d.winner >= 0, names[np.maximum(d.winner, 0)], "Unknown")
    reasons = np.asarray(res.reasons).astype(str)
    final = np.asarray(res.labels).astype(str)
    winner = np.where(np.char.startswith(reasons, NOVEL), np.char.replace(reasons, NOVEL, ""), final)
    return {
        "vote": (vote_labels, d.vote_share),
        "decide": (winner, np.asarray(res.confidence)),
        f"decide+novelty@{alpha:g}": (final, np.asarray(res.confidence)),
    }


def run_one(
    ds: BenchDataset, *, seed: int, store: VectorStore, encoder: str, alpha: float, left_out: str | None
) -> list[dict[str, Any]]:
    """Build, annotate and score one (dataset, seed, left-out type) task; print and return its rows."""
    from annotator import annotate
    from indexer import build_reference, drop_reference
    from schemas import CellVectorSpec

    y = ds.adata.obs[ds.label_key].astype(str).to_numpy()
    ref_idx, q_idx = stratified_split(y, test_size=0.2, seed=seed)
    if left_out is not None:
        ref_idx = ref_idx[y[ref_idx] != left_out]
    ref, query = ds.adata[ref_idx], ds.adata[q_idx]
    y_ref, y_q = y[ref_idx], y[q_idx]
    spec = CellVectorSpec(encoder=encoder, species=ds.species)
    name = f"dec_{ds.name.replace('-', '_')}_s{seed}"
    t0 = time.perf_counter()
    build_reference(_plain(ref, y_ref), store=store, name=name, label_key="label", spec=spec)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = annotate(_plain(query), reference=name, store=store, k=10, unknown_alpha=alpha)
    t_annot = time.perf_counter() - t0
    drop_reference(store, name)
    rows = []
    for method, (labels, conf) in three_decisions(res, alpha).items():
        correct = labels == y_q
        row: dict[str, Any] = {
            "dataset": ds.name,
            "seed": seed,
            "method": method,
            "n_ref": int(ref.n_obs),
            "n_query": int(query.n_obs),
            "build_s": round(t_build, 1),
            "annotate_s": round(t_annot, 1),
        }
        if left_out is None:
            from sklearn.metrics import f1_score

            # Macro-F1 over the true classes ("Unknown" counts as a wrong label, not as a class of its own).
            f1 = f1_score(y_q, labels, labels=np.unique(y_q), average="macro", zero_division=0)
            row |= {
                "accuracy": float(correct.mean()),
                "macro_f1": float(f1),
                "ece": ece(conf, correct),
                "rejected": float((labels == "Unknown").mean()),
            }
        else:
            missing = y_q == left_out
            row |= {
                "left_out": left_out,
                "missing_rejected": float((labels[missing] == "Unknown").mean()),
                "known_rejected": float((labels[~missing] == "Unknown").mean()),
                "known_accuracy": float(correct[~missing].mean()),
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """Return a markdown table of the mean of ``cols`` per (dataset, method)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["method"])].append(r)
    out = ["| dataset | method | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (dsn, m), rs in groups.items():
        vals = [f"{np.mean([r[c] for r in rs]):.3f}" for c in cols]
        out.append(f"| {dsn} | {m} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (see the module docstring)."""
    from benchmarks.accuracy import load_dataset
    from indexer import open_store

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="pbmc68k,voigt-fine,voigt-coarse")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--store", required=True)
    p.add_argument("--encoder", default="random:384")
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--left-out", action="store_true", help="Leave-one-type-out (open set).")
    args = p.parse_args(argv)
    store = open_store(args.store)
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        ds = load_dataset(name)
        labels = sorted(set(ds.adata.obs[ds.label_key].astype(str))) if args.left_out else [None]
        for seed in range(args.seeds):
            for lo in labels:
                rows += run_one(ds, seed=seed, store=store, encoder=args.encoder, alpha=args.alpha, left_out=lo)
    cols = (
        ["missing_rejected", "known_rejected", "known_accuracy"]
        if args.left_out
        else ["accuracy", "macro_f1", "ece", "rejected"]
    )
    print(table(rows, cols), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
