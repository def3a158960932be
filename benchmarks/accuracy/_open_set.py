"""Open-set and calibration benchmark (issue 14): what ``cellvec bench --open-set`` and ``decision.py`` run.

For each seed, cellvec's seeded stratified 80/20 split (or a dataset's fixed reference / query pair):
``build_reference`` (which fits the calibration on the reference split only) and ``annotate`` at
``unknown_alpha``; CellTypist on the same split.

* **closed**: the full reference. Accuracy, macro-F1 over the true classes ("Unknown" counted as a wrong
  label), expected calibration error of the confidence, the share rejected, and per-class recall by
  reference class size (≤ 5, 6-20, 21-100, > 100 cells).
* **open** (leave-one-type-out): every label with at least ``min_cells`` reference cells is removed from the
  reference in turn and the full query split is annotated: the share of the missing type's cells called
  "Unknown", the share of the known cells called "Unknown", known-cell accuracy, and the AUROC of the novelty
  score (missing vs known cells).

Methods scored on one annotation: ``vote`` (the majority vote of the reported neighbours, confidence = vote
share), ``decide`` (the calibrated winner without rejection), ``decide+novelty@alpha`` (the product's
output: the reference's novelty test read against the query's empirical null, and the query-density test). A
second annotation of the same query with ``query_density=False, empirical_null=False`` gives
``decide+novelty@alpha reference test only``. CellTypist: its best match and
its "Unassigned" rule (``celltypist p>0.5``); its novelty score is one minus its largest probability.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd

from indexer.cells import decide, stratified_split

if TYPE_CHECKING:
    from annotator import AnnotationResult
    from benchmarks.accuracy._datasets import BenchDataset
    from indexer import VectorStore

NOVEL = "unlike any reference cell of "
RARE_CLUSTERS = ("3", "4", "8A", "16", "10", "9")
RARE_SIZES = (3, 4, 5, 6, 8, 10)
"""``voigt-rare``: the voigt-fine split with these clusters' *reference* cells subsampled (seeded) to these
sizes; the query keeps all its cells, so rare-class recall is measured on 11-20 query cells each."""
SIZE_BINS = ((1, 5), (6, 20), (21, 100), (101, 10**9))
OPEN_COLUMNS = ["missing_rejected", "known_rejected", "novelty_auroc", "known_accuracy"]
CLOSED_COLUMNS = [
    "accuracy",
    "macro_f1",
    "ece",
    "ece_null",
    "rejected",
    "recall_1_5",
    "recall_6_20",
    "recall_21_100",
    "recall_101_up",
]


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


def ece_null(p: np.ndarray, *, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated confidence with these values (outcomes drawn with probability ``p``).

    The floor a measured ECE is read against: on 140 query cells (pbmc68k) it is about 0.06.
    """
    rng = np.random.default_rng(seed)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    return float(np.mean([ece(p, rng.random(p.size) < p) for _ in range(draws)]))


def auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (ties count half; NaN without both classes)."""
    from scipy.stats import rankdata

    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf))
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _plain(adata: ad.AnnData, labels: np.ndarray | None = None) -> ad.AnnData:
    obs = pd.DataFrame(index=adata.obs_names)
    if labels is not None:
        obs["label"] = np.asarray(labels).astype(str)
    return ad.AnnData(X=adata.X, obs=obs, var=pd.DataFrame(index=adata.var_names))


def three_decisions(res: AnnotationResult, alpha: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Labels, confidences and novelty scores of the vote, the calibrated winner, and the winner with novelty."""
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
    p = np.asarray(res.novelty_p if res.novelty_p is not None else np.full(final.size, np.nan), dtype=np.float64)
    novelty = -np.log(np.clip(p, 1e-300, 1.0))
    return {
        "vote": (vote_labels, d.vote_share, 1.0 - d.vote_share),
        "decide": (winner, np.asarray(res.confidence), novelty),
        f"decide+novelty@{alpha:g}": (final, np.asarray(res.confidence), novelty),
    }


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
    ref: ad.AnnData, y_ref: np.ndarray, query: ad.AnnData, n_jobs: int = 2
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """CellTypist on the same split: its best match, and its "Unassigned" rule (probability ≤ 0.5)."""
    import celltypist

    from benchmarks.accuracy._baselines import log_normalised
    from benchmarks.accuracy._celltypist import CellTypistBaseline

    base = CellTypistBaseline(n_jobs=n_jobs)
    base.fit(ref, y_ref)
    q = log_normalised(query)
    q = ad.AnnData(X=q.X, obs=pd.DataFrame(index=q.obs_names), var=pd.DataFrame(index=q.var_names))
    res = celltypist.annotate(q, model=base.model_, majority_voting=False)
    best = np.asarray(res.predicted_labels["predicted_labels"]).astype(str)
    prob = res.probability_matrix.to_numpy().max(axis=1)
    return {
        "celltypist": (best, prob, 1.0 - prob),
        "celltypist p>0.5": (np.where(prob > 0.5, best, "Unknown"), prob, 1.0 - prob),
    }


def _split(ds: BenchDataset, seed: int) -> tuple[ad.AnnData, np.ndarray, ad.AnnData, np.ndarray]:
    if ds.query is not None:
        ref, query = ds.adata, ds.query
    else:
        y = ds.adata.obs[ds.label_key].astype(str).to_numpy()
        ref_idx, q_idx = stratified_split(y, test_size=0.2, seed=seed)
        ref, query = ds.adata[ref_idx], ds.adata[q_idx]
    return (
        ref,
        ref.obs[ds.label_key].astype(str).to_numpy(),
        query,
        query.obs[ds.label_key].astype(str).to_numpy(),
    )


def reference_test_only(query: ad.AnnData, *, name: str, store: VectorStore, alpha: float) -> AnnotationResult:
    """Annotate with the reference's calibrated novelty test alone (no query-density test, no empirical null)."""
    from annotator import annotate

    return annotate(
        _plain(query), reference=name, store=store, k=10, unknown_alpha=alpha, query_density=False, empirical_null=False
    )


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
    n_jobs: int = 2,
) -> list[dict[str, Any]]:
    """Build, annotate and score one (dataset, seed, left-out type) task; return one row per method."""
    from annotator import annotate
    from indexer import build_reference, drop_reference
    from schemas import CellVectorSpec

    ref, y_ref, query, y_q = _split(ds, seed)
    keep = np.ones(ref.n_obs, dtype=bool) if left_out is None else y_ref != left_out
    if rare:
        idx = _rare(np.flatnonzero(keep), y_ref, seed)
        keep = np.zeros(ref.n_obs, dtype=bool)
        keep[idx] = True
    ref, y_ref = ref[keep], y_ref[keep]
    spec = CellVectorSpec(encoder=encoder, species=ds.species)
    name = f"openset_{ds.name.replace('-', '_')}{'_rare' if rare else ''}_s{seed}"
    t0 = time.perf_counter()
    build_reference(_plain(ref, y_ref), store=store, name=name, label_key="label", spec=spec)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = annotate(_plain(query), reference=name, store=store, k=10, unknown_alpha=alpha)
        t_annot = time.perf_counter() - t0
        alone = reference_test_only(query, name=name, store=store, alpha=alpha)
    drop_reference(store, name)
    decisions = three_decisions(res, alpha)
    # The same rule without the query's own evidence (the query-density test, the empirical null): the
    # reference's calibrated novelty test alone (issue 14's baseline).
    product = f"decide+novelty@{alpha:g}"
    decisions[f"{product} reference test only"] = three_decisions(alone, alpha)[product]
    if celltypist:
        decisions.update(_celltypist(ref, y_ref, query, n_jobs=n_jobs))
    rows = []
    for method, (labels, conf, novelty) in decisions.items():
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
                "ece_null": ece_null(conf),
                "rejected": float((labels == "Unknown").mean()),
                **recall_by_size(y_ref, y_q, labels),
            }
        else:
            missing = y_q == left_out
            row |= {
                "left_out": left_out,
                "n_missing": int(missing.sum()),
                "missing_rejected": float((labels[missing] == "Unknown").mean()),
                "known_rejected": float((labels[~missing] == "Unknown").mean()),
                "novelty_auroc": auroc(missing, novelty),
                "known_accuracy": float(correct[~missing].mean()),
            }
        rows.append(row)
    return rows


def left_out_types(ds: BenchDataset, *, seed: int, min_cells: int = 20) -> list[str]:
    """Labels with at least ``min_cells`` reference cells in the seed's split (the types left out in turn)."""
    _, y_ref, _, _ = _split(ds, seed)
    names, counts = np.unique(y_ref, return_counts=True)
    return [str(n) for n, c in zip(names, counts, strict=True) if c >= min_cells]


def run_open_set(
    ds: BenchDataset,
    *,
    seeds: int,
    store: VectorStore,
    encoder: str = "random:384",
    alpha: float = 0.01,
    min_cells: int = 20,
    celltypist: bool = True,
    rare: bool = False,
    n_jobs: int = 2,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Closed-set rows and leave-one-type-out rows of every seed (see the module docstring)."""
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        tasks: list[str | None] = [None] + ([] if rare else left_out_types(ds, seed=seed, min_cells=min_cells))
        for i, lo in enumerate(tasks):
            t0 = time.perf_counter()
            out = run_one(
                ds,
                seed=seed,
                store=store,
                encoder=encoder,
                alpha=alpha,
                left_out=lo,
                rare=rare,
                celltypist=celltypist,
                n_jobs=n_jobs,
            )
            rows += out
            if progress is not None:
                what = "closed set" if lo is None else f"without {lo}"
                progress(f"seed {seed}: {what} ({i + 1}/{len(tasks)}, {time.perf_counter() - t0:.0f} s)")
    return rows


def table(rows: list[dict[str, Any]], cols: list[str], *, by: tuple[str, ...] = ("dataset", "method")) -> str:
    """Return a markdown table of the mean of ``cols`` per group of ``by`` (NaN-aware)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if all(c in r for c in cols):
            groups[tuple(r[b] for b in by)].append(r)
    out = ["| " + " | ".join(by) + " | " + " | ".join(cols) + " |", "|" + "---|" * (len(by) + len(cols))]
    for key, rs in groups.items():
        vals = []
        for c in cols:
            v = np.array([r[c] for r in rs], dtype=np.float64)
            vals.append("–" if np.isnan(v).all() else f"{np.nanmean(v):.3f}")
        out.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(vals) + " |")
    return "\n".join(out)


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown: closed-set table (with the rare-class recall), open-set means and per left-out type."""
    parts = ["## Closed set (Unknown counted wrong)", "", table(rows, CLOSED_COLUMNS), ""]
    if any("left_out" in r for r in rows):
        parts += ["## Leave-one-type-out, mean over types", "", table(rows, OPEN_COLUMNS), ""]
        parts += [
            "## Leave-one-type-out, per type",
            "",
            table(rows, OPEN_COLUMNS, by=("dataset", "left_out", "method")),
            "",
        ]
    return "\n".join(parts)


def dump(rows: list[dict[str, Any]]) -> str:
    """JSON of the rows (NaN written as null)."""
    clean = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows]
    return json.dumps(clean, indent=1)
