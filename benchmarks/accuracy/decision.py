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


RARE_CLUSTERS = ("3", "4", "8A", "16", "10", "9")
RARE_SIZES = (3, 4, 5, 6, 8, 10)
"""``voigt-rare``: the voigt-fine split with these clusters' *reference* cells subsampled (seeded) to these
sizes; the query keeps all its cells, so rare-class recall is measured on 11-20 query cells each."""
SIZE_BINS = ((1, 5), (6, 20), (21, 100), (101, 10**9))


def _rare(ref_idx: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = np.ones(ref_idx.size, dtype=bool)
    for cluster, n in zip(RARE_CLUSTERS, RARE_SIZES, strict=True):
        idx = np.flatnonzero(y[ref_idx] == cluster)
        keep[idx] = False
        keep[rng.choice(idx, size=min(n, idx.size), replace=False)] = True
    return ref_idx[keep]


def recall_by_size(y_ref: np.ndarray, y_q: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Mean per-class recall of the classes whose reference size falls in each bin (NaN for empty bins)."""
    names, counts = np.unique(y_ref, return_counts=True)
    size = dict(zip(names.tolist(), counts.tolist(), strict=True))
    out = {}
    for lo, hi in SIZE_BINS:
        classes = [c for c in np.unique(y_q) if lo <= size.get(c, 0) <= hi]
        rec = [float((labels[y_q == c] == c).mean()) for c in classes]
        out[f"recall_{lo}_{hi if hi < 10**9 else 'up'}"] = float(np.mean(rec)) if rec else float("nan")
    return out


def _celltypist(
    ref: ad.AnnData, y_ref: np.ndarray, query: ad.AnnData
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """CellTypist on the same split: its best match, and its "Unassigned" rule (probability ≤ 0.5)."""
    import celltypist

    from benchmarks.accuracy import CellTypistBaseline
    from benchmarks.accuracy._baselines import log_normalised

    base = CellTypistBaseline(n_jobs=2)
    base.fit(ref, y_ref)
    q = log_normalised(query)
    q = ad.AnnData(X=q.X, obs=pd.DataFrame(index=q.obs_names), var=pd.DataFrame(index=q.var_names))
    res = celltypist.annotate(q, model=base.model_, majority_voting=False)
    best = np.asarray(res.predicted_labels["predicted_labels"]).astype(str)
    prob = res.probability_matrix.to_numpy().max(axis=1)
    return {
        "celltypist": (best, prob),
        "celltypist p>0.5": (np.where(prob > 0.5, best, "Unknown"), prob),
    }


def run_one(
    ds: BenchDataset,
    *,
    seed: int,
    store: VectorStore,
    encoder: str,
    alpha: float,
    left_out: str | None,
    rare: bool = False,
    celltypist: bool = False,
) -> list[dict[str, Any]]:
    """Build, annotate and score one (dataset, seed, left-out type) task; print and return its rows."""
    from annotator import annotate
    from indexer import build_reference, drop_reference
    from schemas import CellVectorSpec

    y = ds.adata.obs[ds.label_key].astype(str).to_numpy()
    ref_idx, q_idx = stratified_split(y, test_size=0.2, seed=seed)
    if left_out is not None:
        ref_idx = ref_idx[y[ref_idx] != left_out]
    if rare:
        ref_idx = _rare(ref_idx, y, seed)
    ref, query = ds.adata[ref_idx], ds.adata[q_idx]
    y_ref, y_q = y[ref_idx], y[q_idx]
    spec = CellVectorSpec(encoder=encoder, species=ds.species)
    name = f"dec_{ds.name.replace('-', '_')}{'_rare' if rare else ''}_s{seed}"
    t0 = time.perf_counter()
    build_reference(_plain(ref, y_ref), store=store, name=name, label_key="label", spec=spec)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = annotate(_plain(query), reference=name, store=store, k=10, unknown_alpha=alpha)
    t_annot = time.perf_counter() - t0
    drop_reference(store, name)
    decisions = three_decisions(res, alpha)
    if celltypist:
        decisions.update(_celltypist(ref, y_ref, query))
    rows = []
    for method, (labels, conf) in decisions.items():
        correct = labels == y_q
        row: dict[str, Any] = {
            "dataset": "voigt-rare" if rare else ds.name,
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
                **recall_by_size(y_ref, y_q, labels),
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
    p.add_argument("--celltypist", action="store_true", help="Also CellTypist on the same splits.")
    args = p.parse_args(argv)
    store = open_store(args.store)
    rows: list[dict[str, Any]] = []
    for name in args.datasets.split(","):
        rare = name == "voigt-rare"
        ds = load_dataset("voigt-fine" if rare else name)
        labels = sorted(set(ds.adata.obs[ds.label_key].astype(str))) if args.left_out else [None]
        for seed in range(args.seeds):
            for lo in labels:
                rows += run_one(
                    ds,
                    seed=seed,
                    store=store,
                    encoder=args.encoder,
                    alpha=args.alpha,
                    left_out=lo,
                    rare=rare,
                    celltypist=args.celltypist,
                )
    cols = (
        ["missing_rejected", "known_rejected", "known_accuracy"]
        if args.left_out
        else ["accuracy", "macro_f1", "ece", "rejected", "recall_1_5", "recall_6_20"]
    )
    print(table(rows, cols), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
