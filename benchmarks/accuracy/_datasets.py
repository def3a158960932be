r"""Benchmark datasets: PBMC 68k (reduced), Voigt 2019 retina tasks and the Tran 2019 RGC atlas format.

A :class:`BenchDataset` is either one labelled AnnData that the protocol splits 80/20 per seed, or a fixed
reference / query pair (cross-donor transfer).

Running the paper's own experiment (Tran et al. 2019 mouse RGC atlas)
---------------------------------------------------------------------
The expression matrix is about 1 GB and is not shipped offline. Where it can be downloaded:

1. From the Broad Single Cell Portal study SCP509 ("Mouse retinal ganglion cell adult atlas and
   optic nerve crush time series"), download ``RGC_Atlas.csv`` (genes x cells; the first column holds the
   gene symbols, the header holds the cell names) and ``RGC_Atlas_coordinates.txt`` (the labels; its second
   line is the portal's ``TYPE`` row). GEO GSE137400 holds the same data.
2. Run::

       cellvec bench --dataset tran-rgc --tran-matrix RGC_Atlas.csv \\
           --tran-labels RGC_Atlas_coordinates.txt --clusters C22,C28,C33,C35,C36,C43 \\
           --paper-sizes --seeds 5 --out bench-tran

   ``--clusters`` takes the paper's names: ``C22`` selects every cell whose ``Cluster`` starts with
   ``22_`` (``22_M5``). ``--paper-sizes`` subsamples the six clusters to 165, 138, 117, 92, 69 and 27 cells
   (the paper's sizes; seeded), in the order given. Only the selected cells' columns are read from the CSV.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np

from indexer import InputError

if TYPE_CHECKING:
    from schemas import OrthologReport

PAPER_SIZES: tuple[int, ...] = (165, 138, 117, 92, 69, 27)
"""Cells per cluster in the paper's low-sample task, largest first."""

PAPER_CLUSTERS: tuple[str, ...] = ("C22", "C28", "C33", "C35", "C36", "C43")
"""The paper's six Tran 2019 RGC clusters."""

VOIGT_PAPER_CLUSTERS: tuple[str, ...] = ("17", "14", "13", "15", "2", "1")
"""Six Voigt ``cluster_label`` clusters with ≥ 231 cells for the paper-sized task: four Müller glia
subclusters and two rod subclusters, so that, as with RGC subtypes, classes come in close siblings."""

DatasetName = Literal[
    "pbmc68k", "voigt-coarse", "voigt-fine", "voigt-cross-donor", "voigt-paper-sizes", "tran-rgc"
]
DATASETS: tuple[str, ...] = (
    "pbmc68k",
    "voigt-coarse",
    "voigt-fine",
    "voigt-cross-donor",
    "voigt-paper-sizes",
    "tran-rgc",
)


@dataclass
class BenchDataset:
    """A labelled benchmark task.

    Parameters
    ----------
    name
        Short name used in the report.
    adata
        All cells (split per seed) or, with ``query`` set, the fixed reference.
    label_key
        ``obs`` column with the true labels.
    species
        Species of the gene symbols.
    query
        Fixed query cells (transfer tasks); ``None`` to split ``adata`` per seed.
    description
        One paragraph for the report.
    details
        Extra facts for ``results.json`` (cluster selection, sizes, …).
    native_query
        A cross-species query over its own species' genes (``query`` is then the same cells mapped onto the
        reference's genes): cellvec annotates it as users do, mapping it itself; the baselines read ``query``.
    """

    name: str
    adata: ad.AnnData
    label_key: str
    species: Literal["human", "mouse"] = "human"
    query: ad.AnnData | None = None
    description: str = ""
    details: dict[str, object] = field(default_factory=dict)
    native_query: ad.AnnData | None = None


def _check_labels(adata: ad.AnnData, label_key: str, source: str) -> None:
    if label_key not in adata.obs:
        cols = ", ".join(map(str, adata.obs.columns)) or "none"
        msg = f"{source} has no obs column {label_key!r}; its columns are: {cols}. Pass --label-key."
        raise InputError(msg)


def clean_labels(adata: ad.AnnData, label_key: str) -> ad.AnnData:
    """Drop unlabelled cells, make names unique and the label column plain strings."""
    keep = adata.obs[label_key].notna().to_numpy()
    out = adata[keep].copy()
    out.obs_names_make_unique()
    out.var_names_make_unique()
    out.obs[label_key] = out.obs[label_key].astype(str).to_numpy()
    return out


def from_files(
    adata_path: str | Path,
    *,
    label_key: str,
    query_path: str | Path | None = None,
    layer: str | None = None,
    use_raw: bool | None = None,
) -> BenchDataset:
    """Load a user's labelled ``.h5ad`` (and optionally a fixed query file).

    Parameters
    ----------
    adata_path
        Labelled cells (the reference when ``query_path`` is given).
    label_key
        ``obs`` column with labels, in both files.
    query_path
        Labelled query cells; ``None`` to split ``adata_path`` per seed. A query of the other species is
        mapped onto the reference's genes through HCOP orthologs (:func:`cross_species_query`), so that every
        method, baselines included, sees the same ortholog-mapped genes.
    layer, use_raw
        Which matrix of both files holds the expression (:func:`indexer.cells.select_expression`): every
        method, baselines included, reads that matrix as ``.X``.

    Returns
    -------
    The dataset; its species is inferred from the reference's gene names.
    """
    paths = [Path(adata_path)] + ([Path(query_path)] if query_path else [])
    for p in paths:
        if not p.is_file():
            msg = f"--adata/--query-adata file {str(p)!r} does not exist; give the path of an .h5ad file."
            raise InputError(msg)
    from indexer.cells import select_expression

    ref = select_expression(ad.read_h5ad(paths[0]), layer=layer, use_raw=use_raw, what=str(paths[0]))
    _check_labels(ref, label_key, str(paths[0]))
    query = None
    if query_path:
        query = select_expression(ad.read_h5ad(paths[1]), layer=layer, use_raw=use_raw, what=str(paths[1]))
        _check_labels(query, label_key, str(paths[1]))
        query = clean_labels(query, label_key)
    from indexer import infer_species

    ref = clean_labels(ref, label_key)
    species = infer_species([str(n) for n in ref.var_names]).species
    details: dict[str, object] = {"species": species}
    native = None
    across = ""
    if query is not None:
        native = query
        query, report = cross_species_query(ref, query, reference_species=species)
        if report is not None:
            details["orthologs"] = report.model_dump(mode="json")
            ref = shared_gene_reference(ref, query)
            details["shared_genes"] = int(ref.n_vars)
            across = (
                f". Across species: the {report.query_species} query is mapped onto the {species} reference's genes "
                f"through HCOP orthologs, and every method is fitted on the {ref.n_vars:,} genes it covers "
                "(cellvec: `--genes-of` the query)"
            )
        else:
            native = None
    return BenchDataset(
        name=paths[0].stem,
        adata=ref,
        label_key=label_key,
        species=species,
        query=query,
        description=f"User data {paths[0].name}" + (f" → {paths[1].name}" if query_path else "") + across,
        details=details,
        native_query=native,
    )


def cross_species_query(
    ref: ad.AnnData, query: ad.AnnData, *, reference_species: Literal["human", "mouse"]
) -> tuple[ad.AnnData, OrthologReport | None]:
    """Return the query over the reference's own gene names, ortholog-mapped when its species differs.

    Parameters
    ----------
    ref
        Reference cells (their ``var_names`` name the output columns).
    query
        Query cells, of either species.
    reference_species
        The reference's species.

    Returns
    -------
    The query unchanged and ``None`` for a same-species query; else the mapped query (ln(1 + CP10k) over
    each cell's whole library, only the reference genes some query gene covers) and the mapping report.

    Raises
    ------
    OrthologMappingError
        When too few genes or too little expression map (the same floors as ``annotate``).
    """
    from indexer import GeneCatalog, OrthologMap, infer_species
    from indexer.genes import check_mapping, map_adata

    query_species = infer_species([str(n) for n in query.var_names]).species
    if query_species == reference_species:
        return query, None
    symbols = np.asarray(GeneCatalog.load(reference_species).resolve(list(ref.var_names)), dtype=object)
    omap = OrthologMap.load(query_species, reference_species)
    mapped, report = map_adata(query, omap, symbols)
    check_mapping(report, min_mass_share=0.0)  # a small reference panel catches little mass; the gene floor holds
    name_of = {sym: str(name) for sym, name in zip(symbols[::-1], ref.var_names[::-1], strict=True) if sym}
    mapped.var_names = [name_of[g] for g in mapped.var_names]
    return mapped, report


def shared_gene_reference(ref: ad.AnnData, query: ad.AnnData) -> ad.AnnData:
    """Return the reference log-normalised over its whole library, then cut to the genes the query has.

    Every method of a cross-species run is then fitted on the same genes, cellvec included (the library's
    ``build_reference(..., genes=query)`` makes the same cut). Normalising before the cut keeps each cell's
    scale what it was over all its genes, as the mapped query's is (:func:`cross_species_query`).

    Parameters
    ----------
    ref
        Reference cells (counts or log-normalised).
    query
        Query cells over the reference's gene names (as :func:`cross_species_query` returns them).

    Returns
    -------
    The reference over the shared genes, ln(1 + CP10k).
    """
    import scipy.sparse as sp

    from indexer.cells import log_normalise

    keep = ref.var_names.isin(query.var_names)
    x = log_normalise(sp.csr_matrix(ref.X, dtype=np.float32))
    out = ad.AnnData(X=x[:, np.flatnonzero(keep)], obs=ref.obs.copy(), var=ref.var.iloc[np.flatnonzero(keep)].copy())
    return out


def load_pbmc68k() -> BenchDataset:
    """Return scanpy's ``pbmc68k_reduced``: 700 PBMCs, ``.raw`` log-normalised, labels ``bulk_labels``.

    Returns
    -------
    The dataset (10 noisy FACS-derived populations, 765 genes).
    """
    import scanpy as sc

    raw = sc.datasets.pbmc68k_reduced()
    adata = raw.raw.to_adata()
    adata.obs = raw.obs[["bulk_labels"]].copy()
    adata.uns = {}
    return BenchDataset(
        name="pbmc68k_reduced",
        adata=clean_labels(adata, "bulk_labels"),
        label_key="bulk_labels",
        description=(
            "scanpy `pbmc68k_reduced`: 700 human PBMCs x 765 genes (`.raw`, log-normalised), "
            "10 FACS-derived populations (`bulk_labels`, noisy). Stratified 80/20 split per seed."
        ),
    )


def voigt_path(data_dir: str | Path | None = None) -> Path:
    """Return the path of the Voigt 2019 retina file in the data folder.

    Parameters
    ----------
    data_dir
        The data folder; ``Settings().data_dir`` by default.

    Returns
    -------
    The ``.h5ad`` path (checked to exist).
    """
    if data_dir is None:
        from indexer import Settings

        data_dir = Settings().data_dir
    path = Path(data_dir) / "datasets" / "voigt2019_retina.h5ad"
    if not path.is_file():
        msg = (
            f"Voigt 2019 retina data not found at {str(path)!r}; set CELLVEC_DATA_DIR to the folder holding "
            "datasets/voigt2019_retina.h5ad (GEO GSE130636)."
        )
        raise InputError(msg)
    return path


def subsample_to_sizes(
    adata: ad.AnnData,
    *,
    label_key: str,
    classes: Sequence[str],
    sizes: Sequence[int] = PAPER_SIZES,
    seed: int = 0,
) -> ad.AnnData:
    """Keep ``sizes[i]`` random cells of ``classes[i]`` (seeded) and drop every other class.

    Parameters
    ----------
    adata
        Labelled cells.
    label_key
        Label column.
    classes
        Classes to keep, in the order of ``sizes``.
    sizes
        Cells per class.
    seed
        Sampling seed.

    Returns
    -------
    The subsample, in the original cell order.
    """
    if len(classes) != len(sizes):
        msg = (
            f"{len(classes)} clusters were selected but {len(sizes)} sizes given; give one size per cluster."
        )
        raise InputError(msg)
    rng = np.random.default_rng(seed)
    y = adata.obs[label_key].astype(str).to_numpy()
    picked = []
    for cls, n in zip(classes, sizes, strict=True):
        idx = np.flatnonzero(y == cls)
        if len(idx) < n:
            msg = f"cluster {cls!r} has {len(idx)} cells but {n} are needed; choose a larger cluster."
            raise InputError(msg)
        picked.append(rng.choice(idx, size=n, replace=False))
    return adata[np.sort(np.concatenate(picked))].copy()


def load_voigt(
    task: Literal["coarse", "fine", "cross-donor", "paper-sizes"],
    *,
    data_dir: str | Path | None = None,
    clusters: Sequence[str] | None = None,
    seed: int = 0,
) -> BenchDataset:
    """Return a Voigt 2019 human retina task (values are ln(1 + CP10k)).

    Parameters
    ----------
    task
        ``"coarse"``: ``cell_type_inferred``; ``"fine"``: the authors' ``cluster_label``;
        ``"cross-donor"``: ``cluster_label``, periphery donors 1-2 as reference → periphery donor 3 as query;
        ``"paper-sizes"``: six ``cluster_label`` clusters subsampled to the paper's sizes.
    data_dir
        Data folder (``CELLVEC_DATA_DIR``).
    clusters
        The six clusters of ``"paper-sizes"`` (default :data:`VOIGT_PAPER_CLUSTERS`).
    seed
        Subsampling seed for ``"paper-sizes"``.

    Returns
    -------
    The dataset.
    """
    adata = ad.read_h5ad(voigt_path(data_dir))
    key = "cell_type_inferred" if task == "coarse" else "cluster_label"
    adata.obs_names = (
        adata.obs["barcode"].astype(str).to_numpy() if "barcode" in adata.obs else adata.obs_names
    )
    adata = clean_labels(adata, key)
    base = "Voigt et al. 2019 human neural retina (GSE130636), 6,139 cells x 21,649 genes, ln(1 + CP10k). "
    if task in ("coarse", "fine"):
        what = "coarse cell types (`cell_type_inferred`)" if task == "coarse" else "18 author clusters"
        return BenchDataset(
            name=f"voigt-{task}",
            adata=adata,
            label_key=key,
            description=base + f"Labels: {what}. Stratified 80/20 split per seed.",
        )
    if task == "cross-donor":
        region = adata.obs["region"].astype(str)
        donor = adata.obs["donor"].astype(str)
        periph = region.str.startswith("periph").to_numpy()
        ref_mask = periph & donor.isin(["donor_1", "donor_2"]).to_numpy()
        query_mask = periph & (donor == "donor_3").to_numpy()
        return BenchDataset(
            name="voigt-cross-donor",
            adata=adata[ref_mask].copy(),
            query=adata[query_mask].copy(),
            label_key=key,
            description=base
            + "Cross-donor transfer on `cluster_label`: periphery donors 1-2 (reference, "
            + f"{int(ref_mask.sum())} cells) → periphery donor 3 (query, {int(query_mask.sum())} cells).",
        )
    chosen = list(clusters or VOIGT_PAPER_CLUSTERS)
    sub = subsample_to_sizes(adata, label_key=key, classes=chosen, sizes=PAPER_SIZES, seed=seed)
    return BenchDataset(
        name="voigt-paper-sizes",
        adata=sub,
        label_key=key,
        description=base
        + "Low-sample task like the paper's: clusters "
        + ", ".join(chosen)
        + " subsampled to "
        + ", ".join(map(str, PAPER_SIZES))
        + " cells (seeded). Stratified 80/20 split per seed.",
        details={"clusters": chosen, "sizes": list(PAPER_SIZES)},
    )

