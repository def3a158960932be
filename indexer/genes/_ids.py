"""Gene identifiers of a dataset: detect their kind and species, map them to symbols, measure coverage."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from scipy import sparse

from indexer._errors import InputError
from indexer.genes._catalog import GeneCatalog
from indexer.genes._species import ENSEMBL_STARTS, ENTREZ_STARTS, more_than_half_match, resolve_species
from schemas import CoverageReport, GeneCount, GeneMapping, IdKind, SpeciesCall, SpeciesOption

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["IdKind", "coverage_report", "detect_id_kind", "map_var_names"]

logger = logging.getLogger(__name__)

_ENSEMBL: Final = re.compile(r"^ENS([A-Z]*)G\d{6,}(\.\d+)?$")
_ENTREZ: Final = re.compile(r"^\d+$")
_MAX_DENSE: Final = 20_000_000
"""Largest number of matrix entries densified at once by :func:`coverage_report` (80 MB of float32)."""


def _as_names(names: Sequence[str]) -> list[str]:
    return [str(n).strip() for n in names]


def detect_id_kind(names: Sequence[str]) -> IdKind:
    """Return what a list of gene names is: symbols, Ensembl gene ids or Entrez ids.

    Parameters
    ----------
    names
        Gene names, e.g. ``adata.var_names``.

    Returns
    -------
    ``"ensembl"`` or ``"entrez"`` when more than half the names look like one; ``"symbol"`` otherwise.

    Examples
    --------
    >>> detect_id_kind(["ENSG00000121410.5", "ENSG00000175899"])
    'ensembl'
    >>> detect_id_kind(["1", "2", "Rbpms"])
    'entrez'
    """
    values = _as_names(names)
    if not values:
        return "symbol"
    if more_than_half_match(values, _ENSEMBL, ENSEMBL_STARTS):
        return "ensembl"
    if more_than_half_match(values, _ENTREZ, ENTREZ_STARTS):
        return "entrez"
    return "symbol"


def _column_totals(adata: AnnData) -> np.ndarray:
    x = adata.X
    if x is None:
        return np.zeros(adata.n_vars)
    return np.asarray(x.sum(axis=0), dtype=float).ravel()


def map_var_names(
    adata: AnnData,
    *,
    species: SpeciesOption = "auto",
    gene_column: str | None = None,
    data_dir: Path | None = None,
    option: str | None = None,
    species_call: SpeciesCall | None = None,
) -> GeneMapping:
    """Map a dataset's genes to official symbols of one species.

    Parameters
    ----------
    adata
        The dataset; its ``var_names`` (or ``var[gene_column]``) hold symbols, Ensembl ids (with or without
        version suffix) or Entrez ids.
    species
        ``"auto"`` (infer it, see :func:`indexer.resolve_species`), ``"human"`` or ``"mouse"``.
    gene_column
        A ``var`` column to read the names from instead of ``var_names``.
    data_dir
        Gene data folder; default ``Settings().data_dir``.
    option
        The command-line option that sets the species, named in errors (``"--species"``); ``None`` where
        there is none (the library, ``cellvec annotate``).
    species_call
        The species already decided for these same names (:func:`indexer.resolve_species`): it is used as
        it is, instead of inferring it again (which reads both species' catalogs); ``species`` is then not
        read.

    Returns
    -------
    The mapping: one symbol per ``var`` row (``""`` unmapped), counts, the most expressed unmapped names
    and the species call. When several rows map to one symbol, the row named exactly like it (else the
    first) keeps it and the others are left unmapped.

    Raises
    ------
    SpeciesMismatchError
        When ``species`` contradicts the names (e.g. ``ENSMUSG`` ids with ``species="human"``).
    MixedSpeciesError
        When the names belong to both species.
    InputError
        When ``gene_column`` is not a ``var`` column, or when no name maps.

    Examples
    --------
    >>> mapping = map_var_names(adata, species="mouse")  # doctest: +SKIP
    >>> print(mapping.summary())  # doctest: +SKIP
    """
    if gene_column is not None:
        if gene_column not in adata.var.columns:
            columns = ", ".join(map(str, adata.var.columns)) or "none"
            msg = (
                f"gene column {gene_column!r} is not in var (var columns: {columns}); "
                "pass one of these to --gene-column, or leave it out to use var_names"
            )
            raise InputError(msg)
        names = adata.var[gene_column].astype(str).tolist()
    else:
        names = [str(n) for n in adata.var_names]
    where = f"var[{gene_column!r}]" if gene_column else "var_names"
    id_kind = detect_id_kind(names)
    call = species_call or resolve_species(names, species, data_dir=data_dir, where=where, option=option)
    species = call.species
    catalog = GeneCatalog.load(species, data_dir=data_dir)
    symbols = catalog.resolve(names)
    mapped = symbols != ""
    if not mapped.any():
        kind = {"symbol": "symbols", "ensembl": "Ensembl ids", "entrez": "Entrez ids"}[id_kind]
        column = f"a var column of symbols, Entrez or Ensembl ids as {'--gene-column' if option else 'gene_column'}"
        fix = f"pass {column}"
        if not call.decisive and call.evidence not in ("ensembl", "genome_prefix"):
            other = "mouse" if species == "human" else "human"
            fix = f"pass {f'{option} {other}' if option else f'species={other!r}'}, or {column}"
        msg = (
            f"none of the {len(names):,} {where} map to {species} gene symbols ({kind} such as "
            f"{', '.join(names[:3])}); {fix}"
        )
        raise InputError(msg)
    # Several rows on one symbol: the row named exactly like the symbol keeps it, else the first row.
    exact = np.asarray(names, dtype=object) == symbols
    order = np.lexsort((np.arange(len(names)), ~exact))
    dup = np.zeros(len(names), dtype=bool)
    _, first = np.unique(symbols[order].astype(str), return_index=True)
    dup[order] = True
    dup[order[first]] = False  # the first row of each symbol, in that order, keeps it
    dup &= mapped
    duplicate_examples = list(dict.fromkeys(symbols[dup].tolist()))[:10]
    symbols = symbols.copy()
    symbols[dup] = ""
    mapped = symbols != ""
    unmapped_idx = np.flatnonzero(~mapped & ~dup)
    unmapped_examples: list[str] = []
    if unmapped_idx.size:
        totals = _column_totals(adata)[unmapped_idx]
        order = unmapped_idx[np.argsort(-totals, kind="stable")[:10]]
        unmapped_examples = [names[i] for i in order]
    mapping = GeneMapping(
        symbols=symbols,
        species=species,
        id_kind=id_kind,
        gene_column=gene_column,
        n_genes=len(names),
        n_mapped=int(mapped.sum()),
        n_duplicates=int(dup.sum()),
        duplicate_examples=duplicate_examples,
        unmapped_examples=unmapped_examples,
        species_call=call,
    )
    logger.info(mapping.summary())
    return mapping


def _top_gene_counts(x: object, *, top_n: int) -> np.ndarray:
    """Count, for each gene, the cells that have it among their ``top_n`` highest positive values."""
    n_cells, n_genes = x.shape  # type: ignore[attr-defined]
    counts = np.zeros(n_genes, dtype=np.int64)
    k = min(top_n, n_genes)
    if k == 0 or n_cells == 0:
        return counts
    step = max(1, min(2_000, _MAX_DENSE // max(n_genes, 1)))
    for start in range(0, n_cells, step):
        chunk = x[start : start + step]  # type: ignore[index]
        dense = chunk.toarray() if sparse.issparse(chunk) else np.asarray(chunk)
        if k < n_genes:
            idx = np.argpartition(-dense, k - 1, axis=1)[:, :k]
        else:
            idx = np.broadcast_to(np.arange(n_genes), dense.shape)
        values = np.take_along_axis(dense, idx, axis=1)
        counts += np.bincount(idx[values > 0], minlength=n_genes)
    return counts


def coverage_report(
    adata: AnnData,
    *,
    species: SpeciesOption = "auto",
    top_n: int = 20,
    gene_column: str | None = None,
    data_dir: Path | None = None,
) -> CoverageReport:
    """Measure how many of each cell's top expressed genes have a description, by source.

    Parameters
    ----------
    adata
        The dataset; ``X`` holds counts or log-normalised values (not scaled values).
    species
        ``"auto"`` (inferred from the gene names), ``"human"`` or ``"mouse"``.
    top_n
        Genes counted per cell: its ``top_n`` highest positive values.
    gene_column
        A ``var`` column to read gene names from instead of ``var_names``.
    data_dir
        Gene data folder; default ``Settings().data_dir``.

    Returns
    -------
    Shares of own summary, ortholog summary, full name only, nothing and mitochondrial genes, and the most
    frequent genes without text.

    Raises
    ------
    InputError
        When ``X`` is missing or scaled (negative values), ``top_n`` is not positive, or genes do not map
        (see :func:`map_var_names`).

    Examples
    --------
    >>> print(coverage_report(adata, species="human").to_text())  # doctest: +SKIP
    """
    if top_n <= 0:
        msg = f"top_n={top_n} must be a positive number of genes per cell, e.g. 20"
        raise InputError(msg)
    x = adata.X
    if x is None:
        msg = "adata.X is empty; load a dataset with an expression matrix"
        raise InputError(msg)
    data = x.data if sparse.issparse(x) else np.asarray(x)
    if data.size and float(np.min(data)) < 0:
        msg = (
            "adata.X has negative values (scaled data); give counts or log-normalised values, "
            "e.g. adata.raw.to_adata() (--use-raw)"
        )
        raise InputError(msg)
    mapping = map_var_names(adata, species=species, gene_column=gene_column, data_dir=data_dir)
    catalog = GeneCatalog.load(mapping.species, data_dir=data_dir)
    symbols = mapping.symbols
    names = adata.var[gene_column].astype(str).tolist() if gene_column else [str(n) for n in adata.var_names]
    sources = catalog.sources(symbols.tolist())
    label = np.where(symbols != "", symbols, np.asarray(names, dtype=object))
    mito = np.array([str(s).upper().startswith("MT-") for s in label], dtype=bool)

    counts = _top_gene_counts(x, top_n=top_n)
    total = int(counts.sum())

    def share(mask: np.ndarray) -> float:
        return float(counts[mask].sum() / total) if total else 0.0

    none = (sources == "none") & ~mito

    def top(mask: np.ndarray, limit: int) -> list[GeneCount]:
        idx = np.flatnonzero(mask & (counts > 0))
        idx = idx[np.argsort(-counts[idx], kind="stable")][:limit]
        return [GeneCount(name=str(label[i]), count=int(counts[i])) for i in idx]

    return CoverageReport(
        species=mapping.species,
        top_n=top_n,
        n_cells=adata.n_obs,
        n_genes=adata.n_vars,
        n_mapped=mapping.n_mapped,
        n_counted=total,
        share_own_summary=share((sources == "own_summary") & ~mito),
        share_ortholog_summary=share((sources == "ortholog_summary") & ~mito),
        share_full_name=share((sources == "full_name") & ~mito),
        share_none=share(none),
        share_mitochondrial=share(mito),
        missing=top(none, 20),
        mitochondrial=top(mito, 40),
    )
