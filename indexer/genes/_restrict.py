"""Which of the reference species' genes a set of gene names covers: a reference's panel cut to its query's genes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer._errors import InputError

if TYPE_CHECKING:
    from anndata import AnnData

    from schemas import Species, SpeciesCall


@dataclass(frozen=True)
class GeneSubset:
    """Reference-species genes that a set of gene names covers.

    Attributes
    ----------
    symbols
        Sorted official reference-species symbols.
    n_names
        How many names were given.
    species_call
        The species of the names, as inferred.
    through_orthologs
        Whether the names were of the other species and mapped through HCOP orthologs.
    """

    symbols: np.ndarray
    n_names: int
    species_call: SpeciesCall
    through_orthologs: bool

    def summary(self) -> str:
        """One line: how many genes, and how they came."""
        how = f", {self.species_call.species} names mapped through HCOP orthologs" if self.through_orthologs else ""
        return f"genes: restricted to {self.symbols.size:,} genes covered by {self.n_names:,} given names{how}"


def genes_covered(
    genes: Sequence[str] | AnnData,
    *,
    species: Species,
    data_dir: Path | None = None,
    what: str = "genes",
) -> GeneSubset:
    """Return the genes of ``species`` that ``genes`` names, mapping names of the other species through HCOP.

    The names' species is inferred as a query's is (:func:`indexer.resolve_species`). Names of the same
    species resolve to official symbols (Ensembl and Entrez ids, synonyms and case handled). Names of the other
    species cover the reference genes their HCOP orthologs go to, chosen exactly as ``annotate`` maps a query
    (:meth:`indexer.OrthologMap.matrix`), so a reference cut to these genes has every gene the mapped query
    brings, and only those.

    Parameters
    ----------
    genes
        Gene names, or an AnnData whose ``var_names`` are taken (a query file, typically).
    species
        The reference's species.
    data_dir
        Gene description data folder.
    what
        Name of the input in error messages (``"--genes-of FILE"`` from the CLI).

    Returns
    -------
    The covered genes.

    Raises
    ------
    InputError
        When no name covers any gene of ``species``.
    MixedSpeciesError
        When the names belong to two species.
    """
    from indexer.genes._catalog import GeneCatalog
    from indexer.genes._orthologs import OrthologMap
    from indexer.genes._species import resolve_species

    names = [str(n) for n in (genes.var_names if hasattr(genes, "var_names") else genes)]
    if not names:
        msg = f"{what} holds no gene names; pass the query cells (.h5ad) or a list of gene names."
        raise InputError(msg)
    call = resolve_species(names, "auto", data_dir=data_dir, where=f"gene names of {what}")
    catalog = GeneCatalog.load(species, data_dir=data_dir)
    across = call.species != species and call.decisive
    if across:
        omap = OrthologMap.load(call.species, species, data_dir=data_dir)
        ref = np.asarray(catalog.all_symbols(), dtype=object)
        m, _ = omap.matrix(names, ref.tolist())
        symbols = ref[np.asarray(m.getnnz(axis=0)).ravel() > 0]
    else:
        symbols = np.asarray(catalog.resolve(names), dtype=object)
    out = np.unique(np.asarray([s for s in symbols if s], dtype=str))
    if out.size == 0:
        how = f" through HCOP orthologs of its {call.species} names" if across else ""
        msg = (
            f"none of the {len(names):,} gene names of {what} covers a {species} gene{how}; pass the query the "
            "reference is meant for, whose var_names are gene symbols or Ensembl/Entrez ids."
        )
        raise InputError(msg)
    return GeneSubset(symbols=out.astype(object), n_names=len(names), species_call=call, through_orthologs=across)
