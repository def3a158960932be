"""Use an ortholog map: refuse one too thin to annotate with, or map a whole AnnData onto the reference's genes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp

from indexer._errors import OrthologMappingError
from indexer.genes._hcop import MIN_GENES, MIN_MASS_SHARE
from indexer.genes._orthologs import OrthologMap
from schemas import OrthologReport

if TYPE_CHECKING:
    from collections.abc import Sequence

    from anndata import AnnData

logger = logging.getLogger(__name__)



def check_mapping(
    report: OrthologReport,
    *,
    min_genes: int = MIN_GENES,
    min_mass_share: float = MIN_MASS_SHARE,
) -> None:
    """Refuse a mapping too thin to annotate with, in one line that says what mapped.

    Parameters
    ----------
    report
        From :meth:`OrthologMap.map_matrix`.
    min_genes
        Fewest query genes that must land on reference genes.
    min_mass_share
        Smallest share of the query's expression carried by genes mapped onto reference-species genes.

    Raises
    ------
    OrthologMappingError
        Below either floor.
    """
    q, r = report.query_species, report.reference_species
    top = ", ".join(report.unmapped_examples[:5]) or "none"
    if report.n_mapped < min_genes:
        msg = (
            f"only {report.n_mapped:,} of the {q} query's {report.n_query_genes:,} genes map onto {r} genes "
            f"through HCOP orthologs (at least {min_genes:,} needed; top unmapped: {top}); annotate it "
            f"against a {q} reference, or give the query's full gene list"
        )
        raise OrthologMappingError(msg)
    share = min(report.ortholog_mass_share, report.expression_mass_share)
    if share < min_mass_share:
        msg = (
            f"only {share:.0%} of the {q} query's expression maps onto {r} genes through HCOP orthologs "
            f"(at least {min_mass_share:.0%} needed; top unmapped: {top}); check that the query is {q} and "
            f"its var_names are gene symbols or Ensembl/Entrez ids, or annotate it against a {q} reference"
        )
        raise OrthologMappingError(msg)


def map_adata(
    adata: AnnData,
    omap: OrthologMap,
    ref_gene_symbols: Sequence[str],
    *,
    gene_column: str | None = None,
    layer: str | None = None,
    normalise: bool = True,
    keep: Literal["covered", "all"] = "covered",
) -> tuple[AnnData, OrthologReport]:
    """Return the query as an AnnData over the reference's genes (``var_names`` = reference symbols).

    Parameters
    ----------
    adata
        Query cells x genes of ``omap.query_species`` (counts or log-normalised).
    omap
        The ortholog map.
    ref_gene_symbols
        The reference's gene symbols.
    gene_column
        ``var`` column with the gene names, instead of ``var_names``.
    layer
        Layer to map instead of ``X`` (e.g. ``"counts"``).
    normalise
        Map in linear normalised space and return ln(1 + counts per 10k) computed with each cell's library
        size over *all* its genes: counts are scaled to 10k, log-normalised input is ``expm1``-ed, mapped,
        then ``log1p``-ed. Without this, a later log-normalisation would divide by the mapped genes' total
        only (20% of a mouse cell's counts on pbmc68k's 765 genes), inflating every value.
        ``False`` maps ``X`` as it is.
    keep
        ``"covered"``: only reference genes some query gene maps to. A reference gene absent from the query
        must stay absent, not become an all-zero column: the expression view treats absent panel genes as
        expressed at the reference mean, a zero column as not expressed. ``"all"``: every reference gene.

    Returns
    -------
    The mapped AnnData (``obs`` copied; ``uns['cellvec_orthologs']`` holds the report) and the report.
    """
    import anndata as ad
    import pandas as pd

    from indexer.cells import expression_matrix, log_normalise

    names = adata.var[gene_column].astype(str).tolist() if gene_column else [str(n) for n in adata.var_names]
    view = adata if layer is None else ad.AnnData(X=adata.layers[layer], obs=adata.obs, var=adata.var)
    x = expression_matrix(view, what="query")
    if normalise:
        x = log_normalise(x).copy()
        x.data = np.expm1(x.data)
    ref = [str(g) for g in ref_gene_symbols]
    mapped, report, m = omap._map(x, names, ref)
    if normalise:
        mapped.data = np.log1p(mapped.data)
    cols = np.arange(len(ref))
    if keep == "covered":
        # Covered = some query gene maps there, even if it is zero in every one of these cells.
        cols = np.flatnonzero(np.asarray(m.getnnz(axis=0)) > 0)
    out = ad.AnnData(X=sp.csr_matrix(mapped[:, cols]), obs=adata.obs.copy())
    out.var_names = pd.Index(np.asarray(ref, dtype=object)[cols]).astype(str)
    out.var_names_make_unique()
    out.uns["cellvec_orthologs"] = report.model_dump(mode="json")
    return out, report
