"""Map a query of one species onto a reference of the other through HGNC HCOP human-mouse orthologs.

Both sides of the HCOP table are first put into catalog-symbol space (each row's Entrez id, else its
symbol, resolved by that species' :class:`~indexer.GeneCatalog`), so that a query's ``var_names`` (symbols in
any case, Ensembl or Entrez ids, resolved by the same catalog) and the reference's gene symbols (which came
from the same catalog at build time) meet HCOP on the same spelling, whatever the table's release.

Policy (issue 15)
-----------------
* **One-to-one first.** Each query gene goes to exactly one reference gene, never split or copied, so the
  mapped matrix keeps the query's expression mass. Among all the query gene's HCOP orthologs the choice
  ranks: (1) a reciprocal one-to-one pair, (2) a reference gene that has no other query-species ortholog,
  (3) the most supporting resources (HCOP ``support`` count), (4) the same upper-cased symbol, (5)
  alphabetical. So human ``LYZ`` (mouse ``Lyz2`` 9 resources, ``Lyz1`` 8) goes to ``Lyz2``. When the chosen
  gene is not in the reference's gene list the query gene is left unmapped: falling back to a weaker
  ortholog that happens to be there sent 1,083 mouse genes onto pbmc68k's 765 human genes, 498 of them
  summed into shared paralogs; the global choice keeps a gene's target independent of the reference.
* **Many-to-one sums.** A reference gene chosen by several query genes receives their sum (mouse ``Lyz1`` +
  ``Lyz2`` -> human ``LYZ``): one gene family's total expression, like a probe that cannot tell them apart.
  Several ``var`` rows resolving to one query symbol are summed too.
* ``min_support`` drops HCOP pairs backed by fewer resources (default 1 keeps all).

The mapping is one sparse ``n_query_genes x n_reference_genes`` 0/1 matrix ``M``; ``X_mapped = X @ M``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from indexer._errors import InputError
from indexer.genes._hcop import _MAPS, Resolver, _best_pairs, load_hcop
from schemas import OrthologReport, Species

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import pandas as pd


logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class OrthologMap:
    """Ortholog pairs from a query species to a reference species, in catalog-symbol space.

    Use :meth:`load` (cached per species pair and data folder).

    Attributes
    ----------
    query_species, reference_species
        The two species (different).
    query_symbols, reference_symbols
        One entry per pair (official symbols of each catalog).
    support
        Number of HCOP resources supporting the pair.
    query_catalog, reference_catalog
        The two :class:`~indexer.GeneCatalog` objects (their ``resolve`` turns names into official symbols).
    best
        The chosen reference gene of every query gene (see :meth:`choose`).
    """

    query_species: Species
    reference_species: Species
    query_symbols: np.ndarray
    reference_symbols: np.ndarray
    support: np.ndarray
    query_catalog: Resolver
    reference_catalog: Resolver
    best: pd.DataFrame

    @classmethod
    def load(
        cls,
        query_species: Species,
        reference_species: Species,
        *,
        data_dir: Path | None = None,
        min_support: int = 1,
    ) -> OrthologMap:
        """Build (once per process) the map from ``query_species`` genes to ``reference_species`` genes.

        Parameters
        ----------
        query_species, reference_species
            ``"human"`` and ``"mouse"``, either way round.
        data_dir
            Gene data folder; default ``Settings().data_dir``.
        min_support
            Drop HCOP pairs supported by fewer resources.

        Returns
        -------
        The map.

        Raises
        ------
        InputError
            When the two species are the same or unsupported.
        """
        import pandas as pd

        from indexer.genes._catalog import GeneCatalog

        if {query_species, reference_species} != {"human", "mouse"}:
            msg = (
                f"no ortholog map from {query_species!r} to {reference_species!r}; HCOP maps 'human' <-> "
                "'mouse' (a query of the reference's own species needs no mapping)"
            )
            raise InputError(msg)
        if data_dir is None:
            from indexer._settings import Settings

            data_dir = Settings().data_dir
        root = Path(data_dir).expanduser().resolve()
        key = (query_species, reference_species, root, min_support)
        cached = _MAPS.get(key)
        if cached is not None:
            return cached
        table = load_hcop(data_dir=root)
        table = table[table["n_support"] >= min_support]
        qcat = GeneCatalog.load(query_species, data_dir=root)
        rcat = GeneCatalog.load(reference_species, data_dir=root)
        sides = {}
        for species, cat in ((query_species, qcat), (reference_species, rcat)):
            by_id = np.asarray(cat.resolve(table[f"{species}_entrez_gene"].tolist()), dtype=object)
            by_sym = np.asarray(cat.resolve(table[f"{species}_symbol"].tolist()), dtype=object)
            sides[species] = np.where(by_id != "", by_id, by_sym)
        pairs = pd.DataFrame(
            {"q": sides[query_species], "r": sides[reference_species], "s": table["n_support"].to_numpy()}
        )
        pairs = pairs[(pairs["q"] != "") & (pairs["r"] != "")]
        out = cls.from_pairs(
            query_species,
            reference_species,
            pairs.itertuples(index=False, name=None),
            query_catalog=qcat,
            reference_catalog=rcat,
        )
        _MAPS[key] = out
        return out

    @classmethod
    def from_pairs(
        cls,
        query_species: Species,
        reference_species: Species,
        pairs: Iterable[tuple[str, str, int]],
        *,
        query_catalog: Resolver,
        reference_catalog: Resolver,
    ) -> OrthologMap:
        """Build a map from ``(query symbol, reference symbol, support)`` pairs (tests, other ortholog tables).

        Parameters
        ----------
        query_species, reference_species
            The two species.
        pairs
            Ortholog pairs in official-symbol space; a repeated pair keeps its highest support.
        query_catalog, reference_catalog
            Anything with ``resolve(names) -> symbols`` (:class:`indexer.GeneCatalog`).

        Returns
        -------
        The map.
        """
        import pandas as pd

        frame = pd.DataFrame(list(pairs), columns=["q", "r", "s"])
        frame = frame.sort_values("s", ascending=False, kind="stable").drop_duplicates(["q", "r"])
        q = frame["q"].to_numpy(dtype=object)
        r = frame["r"].to_numpy(dtype=object)
        support = frame["s"].to_numpy(dtype=np.int16)
        return cls(
            query_species=query_species,
            reference_species=reference_species,
            query_symbols=q,
            reference_symbols=r,
            support=support,
            query_catalog=query_catalog,
            reference_catalog=reference_catalog,
            best=_best_pairs(q, r, support),
        )

    def __len__(self) -> int:
        return int(self.query_symbols.size)

    def resolve_query(self, names: Sequence[str]) -> np.ndarray:
        """Return the official query-species symbol of each name (``""`` unresolved)."""
        return np.asarray(self.query_catalog.resolve([str(n) for n in names]), dtype=object)

    def choose(self, reference_genes: Sequence[str]) -> pd.DataFrame:
        """Return, per query symbol, the one reference gene it goes to, when that gene is in ``reference_genes``.

        The choice is made over all the query gene's reference-species orthologs, not only those in
        ``reference_genes``: a gene whose best ortholog is missing from the reference is left unmapped rather
        than sent to a weaker paralog that happens to be there. So a query gene goes to the same reference
        gene whatever the reference's gene list.

        Parameters
        ----------
        reference_genes
            The reference's gene symbols (official reference-species symbols; ``""`` entries ignored).

        Returns
        -------
        Columns ``q`` (query symbol), ``r`` (chosen reference symbol), ``one_to_one``, ``one_to_many``,
        ``support``; one row per query symbol whose choice is in ``reference_genes``.
        """
        import pandas as pd

        chosen = self.best
        return chosen[chosen["r"].isin(pd.Index([g for g in reference_genes if g]))]

    def matrix(
        self, query_var_names: Sequence[str], reference_genes: Sequence[str]
    ) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
        """Return the 0/1 ``n_query_genes x n_reference_genes`` mapping matrix and per-row facts.

        Parameters
        ----------
        query_var_names
            The query's gene names (any form the query catalog resolves).
        reference_genes
            The reference's gene symbols (the output columns, in order).

        Returns
        -------
        ``M`` (CSR, float32, at most one 1 per row) and a dict of boolean row masks ``resolved``,
        ``with_ortholog``, ``one_to_one``, ``one_to_many``.
        """
        import pandas as pd

        symbols = self.resolve_query(query_var_names)
        ref = np.asarray([str(g) for g in reference_genes], dtype=object)
        col_of = pd.Series(np.arange(ref.size), index=ref)
        col_of = col_of[~col_of.index.duplicated() & (col_of.index != "")]
        chosen = self.choose(ref.tolist()).set_index("q")
        has_any = pd.Index(self.query_symbols).unique()
        sym = pd.Series(symbols)
        target = sym.map(chosen["r"])
        rows = np.flatnonzero(target.notna().to_numpy())
        cols = col_of.reindex(target.iloc[rows].to_numpy()).to_numpy(dtype=np.int64)
        m = sp.csr_matrix((np.ones(rows.size, dtype=np.float32), (rows, cols)), shape=(len(symbols), ref.size))
        facts = {
            "resolved": symbols != "",
            "with_ortholog": sym.isin(has_any).to_numpy(),
            "mapped": target.notna().to_numpy(),
            "one_to_one": sym.map(chosen["one_to_one"]).eq(other=True).to_numpy(),
            "one_to_many": sym.map(chosen["one_to_many"]).eq(other=True).to_numpy(),
        }
        return m, facts

    def map_matrix(
        self,
        x: sp.spmatrix | np.ndarray,
        query_var_names: Sequence[str],
        ref_gene_symbols: Sequence[str],
    ) -> tuple[sp.csr_matrix, OrthologReport]:
        """Map a cells x query-genes matrix onto the reference's genes: ``X @ M``, one sparse product.

        Parameters
        ----------
        x
            Cells x query genes (counts preferred: sums of counts are exact; log values are summed as they are).
        query_var_names
            Names of ``x``'s columns.
        ref_gene_symbols
            The reference's gene symbols: the output columns, in order. Columns no query gene maps to are
            all zero (see :func:`map_adata`, which drops them).

        Returns
        -------
        The mapped matrix (cells x reference genes, CSR float32) and the report.

        Examples
        --------
        >>> omap = OrthologMap.load("mouse", "human")  # doctest: +SKIP
        >>> xm, report = omap.map_matrix(mouse.X, mouse.var_names, human_ref_symbols)  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
        """
        mapped, report, _ = self._map(x, query_var_names, ref_gene_symbols)
        return mapped, report

    def map_log_normalised(
        self,
        x: sp.csr_matrix,
        query_var_names: Sequence[str],
        ref_gene_symbols: Sequence[str],
    ) -> tuple[sp.csr_matrix, np.ndarray, OrthologReport]:
        """Map ln(1 + counts per 10k) values onto the reference genes that some query gene covers.

        Values are ``expm1``-ed, summed onto reference genes (one sparse product), then ``log1p``-ed, so each
        cell keeps its library size over *all* its genes. Reference genes no query gene maps to are left out
        rather than zero-filled: the expression view treats an absent panel gene as expressed at the
        reference mean, an all-zero column as not expressed.

        Parameters
        ----------
        x
            Cells x query genes, log-normalised (:func:`indexer.cells.log_normalise`).
        query_var_names
            Names of ``x``'s columns.
        ref_gene_symbols
            Candidate reference genes (e.g. the reference species' whole catalog).

        Returns
        -------
        The mapped log-normalised matrix (cells x covered reference genes), the covered genes' symbols, and
        the report.
        """
        lin = sp.csr_matrix(x, dtype=np.float32, copy=True)
        lin.data = np.expm1(lin.data)
        mapped, report, m = self._map(lin, query_var_names, ref_gene_symbols)
        covered = np.flatnonzero(np.asarray(m.getnnz(axis=0)).ravel() > 0)
        out = sp.csr_matrix(mapped[:, covered])
        out.data = np.log1p(out.data).astype(np.float32)
        return out, np.asarray([str(g) for g in ref_gene_symbols], dtype=object)[covered], report

    def _map(
        self, x: sp.spmatrix | np.ndarray, query_var_names: Sequence[str], ref_gene_symbols: Sequence[str]
    ) -> tuple[sp.csr_matrix, OrthologReport, sp.csr_matrix]:
        if x.shape[1] != len(query_var_names):
            msg = (
                f"the matrix has {x.shape[1]} gene columns but {len(query_var_names)} gene names were given; "
                "pass adata.X with adata.var_names"
            )
            raise InputError(msg)
        m, facts = self.matrix(query_var_names, ref_gene_symbols)
        xs = sp.csr_matrix(x, dtype=np.float32)
        mapped = sp.csr_matrix(xs @ m)
        mapped.sum_duplicates()
        mapped.eliminate_zeros()
        mass = np.asarray(xs.sum(axis=0), dtype=np.float64).ravel()
        total = float(mass.sum())
        share_mapped = float(mass[facts["mapped"]].sum() / total) if total > 0 else 0.0
        share_ortho = float(mass[facts["with_ortholog"]].sum() / total) if total > 0 else 0.0
        per_col = np.asarray(m.getnnz(axis=0)).ravel()
        many_to_one = int((per_col[m.indices] > 1).sum())  # rows sharing their column with another row
        unmapped = np.flatnonzero(~facts["mapped"])
        top = unmapped[np.argsort(-mass[unmapped], kind="stable")[:10]]
        report = OrthologReport(
            query_species=self.query_species,
            reference_species=self.reference_species,
            n_query_genes=len(query_var_names),
            n_resolved=int(facts["resolved"].sum()),
            n_with_ortholog=int(facts["with_ortholog"].sum()),
            n_mapped=int(facts["mapped"].sum()),
            n_one_to_one=int(facts["one_to_one"].sum()),
            n_one_to_many=int(facts["one_to_many"].sum()),
            n_many_to_one=many_to_one,
            n_reference_genes=len(ref_gene_symbols),
            n_reference_covered=int((per_col > 0).sum()),
            expression_mass_share=min(share_mapped, 1.0),
            ortholog_mass_share=min(share_ortho, 1.0),
            unmapped_examples=[str(query_var_names[i]) for i in top if mass[i] > 0],
        )
        logger.info(report.summary())
        return mapped, report, m
