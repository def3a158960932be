"""Issue 14: variants of the query-density novelty test, screened on the product's own annotations.

For each task (seed 0's split; with ``--left-out`` every type with at least 20 reference cells removed from the
reference in turn, else the closed set), the reference is built and the query annotated once with the
reference's test alone (no query-density test, no empirical null); every variant is then computed from that
annotation's query vectors and neighbour similarities, and combined with the reference's novelty p-value as the
product combines them (``min(p_reference, f p_density)``, ``f`` = 2 for one density p-value, 3 for the
product's two parts, rejected at ``--alpha``):

* ``reference``: the reference's test alone (the product before the density test);
* ``global-c1``: the union count against an exchangeable null (``c = 1``);
* ``per-label``: the count among the query and reference cells of the cell's predicted label, the null
  ``c n_qY / (c n_qY + n_rY)`` per label, ``c`` fitted on the median cell;
* ``count``: the count of :func:`indexer.cells.query_density` alone (session 11's product);
* ``pcs`` / ``no-head``: the count with the vectors cut to the 50 PCA dimensions, or without the class scores;
* ``product``: :func:`indexer.cells.query_density` as annotate calls it (count and neighbourhood part, labels
  with fewer than 20 reference cells not tested);
* ``…+enull``: the same with the reference's p-values read against the query's empirical null
  (:func:`indexer.cells.empirical_null`, as annotate does); ``product+refnb+enull`` adds the neighbourhood
  average of those p-values as a fourth p-value (``f`` = 4).

``--min-cells`` sets the smallest query both query-side steps run on (the product: 200).

Prints one line per task (rejected missing / rejected known per variant, or rejected in the closed set) and
the means.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.density_variants --dataset voigt-coarse --left-out --store S
    OMP_NUM_THREADS=1 python -m benchmarks.accuracy.density_variants --dataset voigt-cross-donor --store S
"""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.accuracy._open_set import NOVEL, _plain, _split, left_out_types, reference_test_only
from indexer.cells._density import DENSITY_MIN_CELLS

if TYPE_CHECKING:
    from benchmarks.accuracy._datasets import BenchDataset
    from indexer import VectorStore

VARIANTS = (
    "reference",
    "global-c1",
    "per-label",
    "count",
    "pcs",
    "no-head",
    "product",
    "reference+enull",
    "count+enull",
    "product+enull",
    "product+refnb+enull",
)


def _per_label(v: np.ndarray, winner: np.ndarray, ref_scores: np.ndarray, sizes: dict[str, int]) -> np.ndarray:
    """Return the per-label variant's p-values (1 where untested)."""
    from indexer.cells._density import _fit_inflation, _tail, _union_count

    m = ref_scores.shape[1]
    n = len(v)
    x, n_q, n_r, ok = np.zeros(n, np.int64), np.zeros(n), np.zeros(n), np.zeros(n, bool)
    for lab in np.unique(winner):
        idx = np.flatnonzero(winner == lab)
        if lab == "Unknown" or idx.size < 2 or sizes.get(lab, 0) == 0:
            continue
        s = v[idx] @ v[idx].T
        np.fill_diagonal(s, -np.inf)
        if s.shape[1] < m:
            s = np.pad(s, ((0, 0), (0, m - s.shape[1])), constant_values=-np.inf)
        x[idx] = _union_count(s, ref_scores[idx], m)
        n_q[idx], n_r[idx], ok[idx] = idx.size - 1, sizes[lab], True
    p = np.ones(n)
    if ok.any():
        c = _fit_inflation(x[ok], n_q[ok], n_r[ok], m)
        p[ok] = _tail(x[ok], m, c * n_q[ok] / (c * n_q[ok] + n_r[ok]))[0]
    return p


def _global_c1(v: np.ndarray, ref_scores: np.ndarray, n_reference: int) -> np.ndarray:
    """Return the global count's p-values under an exchangeable null (``c = 1``)."""
    from indexer.cells._density import _tail, _union_count

    m = ref_scores.shape[1]
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    x = _union_count(s, ref_scores, m)
    n_q = np.full(len(v), len(v) - 1.0)
    return _tail(x, m, n_q / (n_q + n_reference))[0]


def _subspace(
    v_q: np.ndarray, v_r: np.ndarray, dims: np.ndarray, tested: np.ndarray, m: int = 10
) -> np.ndarray:
    """Return the count's p-values with the vectors cut to ``dims`` (exact reference neighbours there)."""
    from indexer.cells import query_density

    def unit(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a[:, dims], dtype=np.float32)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    q, r = unit(v_q), unit(v_r)
    top = np.empty((len(q), m), dtype=np.float32)
    for start in range(0, len(q), 1024):
        s = q[start : start + 1024] @ r.T
        part = np.partition(s, s.shape[1] - m, axis=1)[:, -m:]
        top[start : start + 1024] = -np.sort(-part, axis=1)
    return query_density(q, top, n_reference=len(r), tested=tested).p_count


def _reference_smoothed(v: np.ndarray, ref_scores: np.ndarray, p_ref: np.ndarray, m: int = 10) -> np.ndarray:
    """Return the neighbourhood part applied to the reference's novelty p-values (screen only)."""
    from indexer.cells._density import _mutual, _smoothed, _union_neighbours

    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    ref = -np.sort(-ref_scores[:, :m], axis=1)
    x, src, dst, sim = _union_neighbours(s, ref, m)
    mutual = _mutual(x, src, dst, sim, ref, m)
    p = np.nan_to_num(p_ref, nan=1.0)
    return _smoothed(p, src[mutual], dst[mutual], np.arange(len(v)))


def run_task(
    ds: BenchDataset,
    *,
    seed: int,
    store: VectorStore,
    left_out: str | None,
    alpha: float,
    min_cells: int = DENSITY_MIN_CELLS,
) -> dict[str, tuple[float, float]]:
    """Rejected (missing, known) per variant of one task; closed set: (rejected, rejected)."""
    from annotator import annotate
    from indexer import Reference, build_reference, drop_reference
    from indexer.cells import DENSITY_MIN_LABEL_CELLS, empirical_null, novelty_floor, query_density
    from schemas import CellVectorSpec

    ref, y_ref, query, y_q = _split(ds, seed)
    keep = np.ones(ref.n_obs, dtype=bool) if left_out is None else y_ref != left_out
    ref, y_ref = ref[keep], y_ref[keep]
    name = "density_variants"
    build_reference(
        _plain(ref, y_ref),
        store=store,
        name=name,
        label_key="label",
        spec=CellVectorSpec(encoder="random:384", species=ds.species),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = reference_test_only(query, name=name, store=store, alpha=alpha)
        res_ref = annotate(_plain(ref), reference=name, store=store, k=10, unknown_alpha=0)
    cal = Reference.open(store, name).artifacts.calibration
    drop_reference(store, name)
    reasons, final = np.asarray(res.reasons).astype(str), np.asarray(res.labels).astype(str)
    winner = np.where(np.char.startswith(reasons, NOVEL), np.char.replace(reasons, NOVEL, ""), final)
    v = np.asarray(res.vectors, dtype=np.float32)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    scores = np.nan_to_num(np.asarray(res.neighbour_scores, dtype=np.float32), nan=-np.inf)
    names, counts = np.unique(y_ref, return_counts=True)
    sizes = dict(zip(names.tolist(), counts.tolist(), strict=True))
    p_ref = np.asarray(res.novelty_p, dtype=np.float64)
    pos = np.minimum(np.searchsorted(names, winner), names.size - 1)
    label_size = np.where(names[pos] == winner, counts[pos], 0)  # 0 for "Unknown" (no neighbour)
    tested = label_size >= DENSITY_MIN_LABEL_CELLS
    product = query_density(v, scores, n_reference=ref.n_obs, tested=tested, min_cells=min_cells)
    v_r = np.asarray(res_ref.vectors, dtype=np.float32)
    n_pc, n_lab = 50, len(names)
    density = {
        "global-c1": _global_c1(v, scores, ref.n_obs),
        "per-label": _per_label(v, winner, scores, sizes),
        "count": product.p_count,
        "pcs": _subspace(v, v_r, np.arange(n_pc), tested),
        "no-head": _subspace(v, v_r, np.r_[0:n_pc, n_pc + n_lab : v.shape[1]], tested),
        "product": product.p,
    }
    cal_names = np.asarray(cal.labels, dtype=str)
    order = np.argsort(cal_names)
    at = order[np.minimum(np.searchsorted(cal_names, winner, sorter=order), cal_names.size - 1)]
    codes = np.where(cal_names[at] == winner, at, -1)
    p_enull = empirical_null(p_ref, floor=novelty_floor(cal, codes), min_cells=min_cells).p
    density["refnb"] = np.where(tested, _reference_smoothed(v, scores, p_enull), 1.0)
    missing = y_q == left_out if left_out is not None else np.zeros(y_q.size, dtype=bool)
    out = {}
    for variant in VARIANTS:
        base = p_enull if variant.endswith("+enull") else p_ref
        if variant == "product+refnb+enull":
            both = np.fmin(density["product"], density["refnb"])
            p = np.fmin(base, np.minimum(4.0 * both, 1))
            out[variant] = _rates(p < alpha, left_out, missing)
            continue
        dens = density.get(variant.removesuffix("+enull"))
        factor = 2.0 if variant.startswith("count") or variant in ("global-c1", "per-label", "pcs", "no-head") else 3.0
        p = base if dens is None else np.fmin(base, np.minimum(factor * dens, 1))
        out[variant] = _rates(p < alpha, left_out, missing)
    return out


def _rates(rejected: np.ndarray, left_out: str | None, missing: np.ndarray) -> tuple[float, float]:
    """(missing, known) rejected; the closed set's share twice."""
    if left_out is None:
        return float(rejected.mean()), float(rejected.mean())
    return float(rejected[missing].mean()), float(rejected[~missing].mean())


def main(argv: list[str] | None = None) -> int:
    """Run the screen (see the module docstring)."""
    from benchmarks.accuracy import load_dataset
    from indexer import open_store

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="voigt-coarse")
    p.add_argument("--store", required=True)
    p.add_argument("--left-out", action="store_true")
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--min-cells", type=int, default=DENSITY_MIN_CELLS, help="Smallest query both steps run on.")
    args = p.parse_args(argv)
    ds = load_dataset(args.dataset)
    store = open_store(args.store)
    tasks: list[str | None] = left_out_types(ds, seed=0) if args.left_out else [None]
    rows = []
    for lo in tasks:
        r = run_task(ds, seed=0, store=store, left_out=lo, alpha=args.alpha, min_cells=args.min_cells)
        rows.append(r)
        cells = "  ".join(f"{v} {a:.2f}/{b:.3f}" if lo else f"{v} {a:.3f}" for v, (a, b) in r.items())
        print(f"{(lo or 'closed set')[:24]:24s} {cells}", flush=True)
    mean = {v: np.mean([r[v] for r in rows], axis=0) for v in VARIANTS}
    print("mean" + " " * 20 + "  ".join(f"{v} {a:.3f}/{b:.3f}" for v, (a, b) in mean.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
