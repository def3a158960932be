"""Run every method on the same seeded splits and collect scores, k tables, timings and figure inputs."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.accuracy._baselines import GenePTW, LogRegBaseline, Method, SeuratLike, timed
from benchmarks.accuracy._celltypist import CellTypistBaseline
from benchmarks.accuracy._cellvec import CellvecMethod
from benchmarks.accuracy._datasets import BenchDataset
from benchmarks.accuracy._order import natural_sorted
from benchmarks.accuracy._protocol import K_GRID, cv_k_accuracy, select_k
from indexer.cells import score, stratified_split

logger = logging.getLogger(__name__)

ProgressFn = Callable[[str], None]

BASELINES: tuple[str, ...] = ("seurat-like", "celltypist", "logreg", "genept-w")
"""Baseline method families."""

CELLVEC_EXTRA_MODES: tuple[str, ...] = ("genept", "hybrid", "expression")
"""Accuracy modes run with the first encoder (``paper`` runs with every encoder)."""


@dataclass
class BenchConfig:
    """Settings of a benchmark run.

    Parameters
    ----------
    seeds
        Number of seeds (splits) — seeds 0, 1, … ``seeds - 1``.
    test_size
        Query share of the stratified split (ignored with a fixed query).
    methods
        Method names or name prefixes to run (``None``: all), e.g. ``("seurat-like", "cellvec-paper")``.
    encoders
        Gene text encoders for cellvec (the first also serves GenePT-w and the extra modes).
    supcon
        Also run the ``paper`` mode of every encoder with SupCon refinement (the accuracy modes run without,
        to keep a Voigt-sized run within minutes).
    k_grid
        Neighbour counts tried by cross-validation.
    n_folds
        Cross-validation folds.
    store
        Store directory for reference collections and the gene vector cache (``":memory:"`` in tests).
    data_dir
        Gene description data folder.
    umap
        Draw UMAPs (first seed); otherwise PCA projections.
    max_plot_cells
        Query cells drawn at most in embedding plots.
    n_jobs
        Processes for CellTypist's per-class fits.
    """

    seeds: int = 5
    test_size: float = 0.2
    methods: tuple[str, ...] | None = None
    encoders: tuple[str, ...] = ("minilm", "random:384")
    supcon: bool = True
    k_grid: tuple[int, ...] = K_GRID
    n_folds: int = 5
    store: str = "./bench-store"
    data_dir: Path | None = None
    umap: bool = True
    max_plot_cells: int = 3000
    n_jobs: int | None = 2

    def to_json(self) -> dict[str, Any]:
        """Return the settings as JSON-ready values."""
        out = dict(self.__dict__)
        out["data_dir"] = str(self.data_dir) if self.data_dir else None
        return out


@dataclass
class SeedRun:
    """One method on one seed."""

    seed: int
    scores: dict[str, float] = field(default_factory=dict)
    per_class_recall: dict[str, float] = field(default_factory=dict)
    k: int | None = None
    cv: dict[int, float] = field(default_factory=dict)
    fit_s: float = 0.0
    cv_s: float = 0.0
    annotate_s: float = 0.0
    ann: dict[str, float] = field(default_factory=dict)
    error: str | None = None


@dataclass
class MethodResult:
    """Everything measured for one method."""

    name: str
    kind: str
    runs: list[SeedRun] = field(default_factory=list)
    confusion: tuple[np.ndarray, np.ndarray] | None = None
    """First seed's ``(true, predicted)`` labels."""
    embedding: np.ndarray | None = None
    """First seed's query vectors (subsampled) for the embedding plot."""
    embedding_index: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class BenchResult:
    """The outcome of :func:`run_bench`."""

    dataset: BenchDataset
    config: BenchConfig
    methods: dict[str, MethodResult]
    splits: list[dict[str, int]]
    labels: list[str]


def _selected(name: str, wanted: Sequence[str] | None) -> bool:
    if not wanted:
        return True
    return any(name == w or name.startswith(w) for w in wanted)


def plan_methods(config: BenchConfig) -> list[str]:
    """Return the names of the methods a configuration runs, in report order.

    Parameters
    ----------
    config
        The run settings.

    Returns
    -------
    Method names.
    """
    names = ["seurat-like", "celltypist", "logreg"]
    if config.encoders:
        names.append(f"genept-w[{config.encoders[0]}]")
    for i, enc in enumerate(config.encoders):
        modes = ["paper", *(m for m in CELLVEC_EXTRA_MODES if m != "expression")] if i == 0 else ["paper"]
        for mode in modes:
            names.append(f"cellvec-{mode}[{enc}]")
            if config.supcon and mode == "paper":
                names.append(f"cellvec-{mode}[{enc}]+supcon")
    names.append("cellvec-expression")
    return [n for n in names if _selected(n, config.methods)]


def make_method(name: str, *, config: BenchConfig, store: Any, species: str, seed: int, tag: str) -> Method:
    """Construct the method called ``name`` (see :func:`plan_methods`) for one seed.

    Parameters
    ----------
    name
        Method name.
    config
        Run settings.
    store
        Open store for cellvec methods.
    species
        Species of the dataset.
    seed
        Seed of this split.
    tag
        Reference name prefix.

    Returns
    -------
    The method.
    """
    if name == "seurat-like":
        return SeuratLike(seed=seed)
    if name == "celltypist":
        return CellTypistBaseline(n_jobs=config.n_jobs)
    if name == "logreg":
        return LogRegBaseline()
    if name.startswith("genept-w["):
        return GenePTW(
            gene_lookup(name[len("genept-w[") : -1], store=store, species=species, data_dir=config.data_dir),
            encoder=name[len("genept-w[") : -1],
        )
    body = name.removeprefix("cellvec-")
    supcon = body.endswith("+supcon")
    body = body.removesuffix("+supcon")
    mode, _, enc = body.partition("[")
    return CellvecMethod(
        mode=mode,  # type: ignore[arg-type]
        encoder=enc.rstrip("]") or (config.encoders[0] if config.encoders else "random:32"),
        supcon=supcon,
        store=store,
        species=species,  # type: ignore[arg-type]
        tag=tag,
        seed=seed,
        data_dir=config.data_dir,
    )


def gene_lookup(
    encoder: str, *, store: Any, species: str, data_dir: Path | None
) -> Callable[[list[str]], tuple[np.ndarray, np.ndarray]]:
    """Return a gene-vector lookup backed by cellvec's gene cache (embeds only genes not yet stored).

    Parameters
    ----------
    encoder
        Encoder id.
    store
        Store holding the gene cache.
    species
        Species of the symbols.
    data_dir
        Gene description data folder.

    Returns
    -------
    ``symbols -> (vectors, found)``.
    """

    def lookup(symbols: list[str]) -> tuple[np.ndarray, np.ndarray]:
        from indexer import GeneCatalog, GeneIndex, get_encoder

        index = GeneIndex(store, get_encoder(encoder), GeneCatalog.load(species, data_dir=data_dir))  # type: ignore[arg-type]
        return index.vectors(symbols)

    return lookup


def _splits(dataset: BenchDataset, config: BenchConfig) -> list[tuple[Any, Any]]:
    """Return ``(reference, query)`` AnnData pairs, one per seed."""
    if dataset.query is not None:
        return [(dataset.adata, dataset.query)] * config.seeds
    y = dataset.adata.obs[dataset.label_key].to_numpy()
    out = []
    for seed in range(config.seeds):
        ref, query = stratified_split(y, test_size=config.test_size, seed=seed)
        out.append((dataset.adata[ref].copy(), dataset.adata[query].copy()))
    return out


def run_bench(
    dataset: BenchDataset, *, config: BenchConfig, progress: ProgressFn | None = None
) -> BenchResult:
    """Run every selected method on the same splits of ``dataset`` (see :class:`BenchConfig`).

    For each seed: split (stratified, seeded) or take the fixed query; fit each method on the reference;
    for KNN methods choose k by cross-validation on the reference vectors only; label the query; score.
    A method that fails is recorded with its error and the run goes on.

    Parameters
    ----------
    dataset
        The task.
    config
        Run settings.
    progress
        Called with one line per step (the CLI prints them).

    Returns
    -------
    Everything the report needs.
    """
    say = progress or logger.info
    names = plan_methods(config)
    results = {n: MethodResult(name=n, kind="") for n in names}
    from indexer import open_store

    store = open_store(config.store)
    splits_meta = []
    labels: set[str] = set()
    try:
        for seed, (ref, query) in enumerate(_splits(dataset, config)):
            y_ref = ref.obs[dataset.label_key].astype(str).to_numpy()
            y_query = query.obs[dataset.label_key].astype(str).to_numpy()
            labels |= set(y_ref) | set(y_query)
            splits_meta.append({"seed": seed, "n_reference": ref.n_obs, "n_query": query.n_obs})
            say(f"seed {seed}: {ref.n_obs} reference cells, {query.n_obs} query cells")
            for name in names:
                _run_one(
                    results[name],
                    seed=seed,
                    ref=ref,
                    query=query,
                    y_ref=y_ref,
                    y_query=y_query,
                    config=config,
                    store=store,
                    dataset=dataset,
                    say=say,
                )
    finally:
        store.close()
    return BenchResult(
        dataset=dataset, config=config, methods=results, splits=splits_meta, labels=natural_sorted(labels)
    )


def _run_one(
    res: MethodResult,
    *,
    seed: int,
    ref: Any,
    query: Any,
    y_ref: np.ndarray,
    y_query: np.ndarray,
    config: BenchConfig,
    store: Any,
    dataset: BenchDataset,
    say: ProgressFn,
) -> None:
    run = SeedRun(seed=seed)
    method: Method | None = None
    try:
        method = make_method(
            res.name,
            config=config,
            store=store,
            species=dataset.species,
            seed=seed,
            tag=f"bench_{dataset.name}",
        )
        res.kind = method.kind
        native = None
        if isinstance(method, CellvecMethod) and dataset.native_query is not None:
            # As a user runs it: `reference build --genes-of QUERY`, then `annotate QUERY` (mapped by cellvec).
            native = method.genes = dataset.native_query
        with warnings.catch_warnings(record=True) as caught:
            # Soft problems (low gene overlap, truncated descriptions) belong in the report, not on stderr.
            warnings.simplefilter("always")
            fitted, run.fit_s = timed(lambda: method.fit(ref, y_ref))
            k = None
            if fitted is not None:
                vecs, labs = fitted
                run.cv, run.cv_s = timed(
                    lambda: cv_k_accuracy(vecs, labs, k_grid=config.k_grid, n_folds=config.n_folds, seed=seed)
                )
                k = select_k(run.cv)
            run.k = k
            q = query if native is None else native  # the baselines read the query mapped by the bench
            pred, run.annotate_s = timed(lambda: method.predict(q, k=k))
        for w in caught:
            if not issubclass(w.category, UserWarning):
                continue  # library deprecation notices say nothing about this benchmark's data
            text = f"{w.category.__name__}: {w.message}"
            if text not in res.warnings:
                res.warnings.append(text)
        sc = score(y_query, pred.labels)
        run.scores = sc.scalars()
        run.per_class_recall = sc.per_class_recall
        if "label_agreement" in pred.extra:
            run.ann = {
                "k": float(pred.extra["k"]),
                "label_agreement": pred.extra["label_agreement"],
                "recall_at_k": pred.extra["recall_at_k"],
                "exact_accuracy": score(y_query, pred.extra["exact_labels"]).accuracy,
                "ann_accuracy": sc.accuracy,
            }
        if seed == 0:
            res.confusion = (y_query, pred.labels)
            if pred.vectors is not None:
                n = len(y_query)
                idx = np.arange(n)
                if n > config.max_plot_cells:
                    idx = np.sort(np.random.default_rng(0).choice(n, config.max_plot_cells, replace=False))
                res.embedding = np.asarray(pred.vectors)[idx]
                res.embedding_index = idx
        k_txt = f", k={k}" if k is not None else ""
        say(
            f"seed {seed}: {res.name}: accuracy {sc.accuracy:.3f}, macro F1 {sc.macro_f1:.3f}{k_txt} "
            f"(fit {run.fit_s:.1f}s, annotate {run.annotate_s:.1f}s)"
        )
    except Exception as e:  # a benchmark reports a failing method and goes on with the others
        run.error = f"{type(e).__name__}: {e}"
        say(f"seed {seed}: {res.name}: FAILED ({run.error})")
        logger.debug("method %s failed", res.name, exc_info=True)
    finally:
        try:
            if method is not None:
                method.close()
        except Exception as e:  # cleanup failure must not hide the result
            say(f"seed {seed}: {res.name}: cleanup failed ({type(e).__name__}: {e})")
    res.runs.append(run)
