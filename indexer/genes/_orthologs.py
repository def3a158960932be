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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from indexer._errors import InputError, OrthologMappingError
from schemas import OrthologReport, Species

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from anndata import AnnData

__all__ = ["OrthologMap", "check_mapping", "load_hcop", "map_adata"]

logger = logging.getLogger(__name__)

ORTHOLOG_TABLE: Final = "orthologs/human_mouse_hcop_fifteen_column.txt.gz"
_COLUMNS: Final = (
    "human_entrez_gene", "human_symbol", "mouse_entrez_gene", "mouse_symbol", "support",
)  # fmt: skip
_TABLES: dict[Path, pd.DataFrame] = {}
_MAPS: dict[tuple[Species, Species, Path, int], OrthologMap] = {}
MIN_GENES: Final = 200
"""Default floor of query genes that must land on reference genes (:func:`check_mapping`)."""
MIN_MASS_SHARE: Final = 0.5
"""Default floor of the query's expression mass carried by genes with an ortholog (:func:`check_mapping`)."""


class Resolver(Protocol):
    """A species' gene-name resolver (:class:`indexer.GeneCatalog` fits)."""

    def resolve(self, names: Sequence[str]) -> np.ndarray:
        """Return the official symbol of each name (``""`` when it does not resolve)."""
        ...


def load_hcop(*, data_dir: Path | None = None) -> pd.DataFrame:
    """Read the HCOP human-mouse table once per process (about 0.3 s; cached per data folder).

    Parameters
    ----------
    data_dir
        Gene data folder (``orthologs/human_mouse_hcop_fifteen_column.txt.gz`` inside); default
        ``Settings().data_dir``.

    Returns
    -------
    Columns ``human_entrez_gene, human_symbol, mouse_entrez_gene, mouse_symbol`` (``""`` where HCOP has
    ``-``) and ``n_support`` (number of supporting resources); rows without both symbols dropped.

    Raises
    ------
    DataError
        When the file is missing or unreadable (the message says how to fetch it).
    """
    from indexer._errors import DataError
    from indexer.genes._files import data_file

    if data_dir is None:
        from indexer._settings import Settings

        data_dir = Settings().data_dir
    key = Path(data_dir).expanduser().resolve()
    table = _TABLES.get(key)
    if table is not None:
        return table
    path = data_file(ORTHOLOG_TABLE, species="mouse", data_dir=key)
    t0 = time.perf_counter()
    try:
        # The C parser with only the needed columns; the wide name/assertion columns are never parsed.
        raw = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, usecols=list(_COLUMNS), quoting=3, engine="c"
        )
    except (ValueError, OSError, EOFError, pd.errors.ParserError) as e:
        msg = f"cannot read the HCOP table {str(path)!r} ({e}); fetch it again with `cellvec genes fetch`"
        raise DataError(msg) from e
    raw = raw.replace("-", "")
    raw = raw[(raw["human_symbol"] != "") | (raw["human_entrez_gene"] != "")]
    raw = raw[(raw["mouse_symbol"] != "") | (raw["mouse_entrez_gene"] != "")]
    support = raw.pop("support")
    raw["n_support"] = (support.str.count(",") + (support != "")).astype(np.int16)
    table = raw.reset_index(drop=True)
    _TABLES[key] = table
    logger.info("read %s HCOP rows in %.2f s", f"{len(table):,}", time.perf_counter() - t0)
    return table


def _best_pairs(q: np.ndarray, r: np.ndarray, support: np.ndarray) -> pd.DataFrame:
    """Rank each query gene's orthologs (one-to-one, unique source, support, same name, name); keep the first."""
    pairs = pd.DataFrame({"q": q, "r": r, "s": support})
    n_targets = pairs.groupby("q")["r"].transform("size")
    n_sources = pairs.groupby("r")["q"].transform("size")
    pairs["one_to_one"] = (n_targets == 1) & (n_sources == 1)
    pairs["one_to_many"] = n_targets > 1
    pairs["unique_source"] = n_sources == 1
    pairs["same_name"] = pairs["q"].str.upper() == pairs["r"].str.upper()
    pairs = pairs.sort_values(
        ["q", "one_to_one", "unique_source", "s", "same_name", "r"],
        ascending=[True, False, False, False, False, True],
        kind="stable",
    )
    best = pairs.drop_duplicates("q")[["q", "r", "one_to_one", "one_to_many", "s"]]
    return best.rename(columns={"s": "support"}).reset_index(drop=True)


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
