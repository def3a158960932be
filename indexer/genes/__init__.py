"""Genes: the description catalog, NCBI fetch, gene ids and species, housekeeping lists, the gene vector index."""

from indexer.genes._catalog import GeneCatalog
from indexer.genes._hcop import load_hcop
from indexer.genes._housekeeping import load_housekeeping
from indexer.genes._ids import coverage_report, detect_id_kind, map_var_names
from indexer.genes._index import (
    GENE_VECTOR,
    GeneIndex,
    PendingGenes,
    gene_collection_name,
    gene_point_id,
    save_pending_genes,
    text_sha256,
)
from indexer.genes._mapping import check_mapping, map_adata
from indexer.genes._ncbi import EUTILS_BASE, HCOP_URL, fetch_gene_data
from indexer.genes._orthologs import OrthologMap
from indexer.genes._restrict import GeneSubset, genes_covered
from indexer.genes._species import infer_species, resolve_species

__all__ = [
    "EUTILS_BASE",
    "GENE_VECTOR",
    "HCOP_URL",
    "GeneCatalog",
    "GeneIndex",
    "GeneSubset",
    "OrthologMap",
    "PendingGenes",
    "check_mapping",
    "coverage_report",
    "detect_id_kind",
    "fetch_gene_data",
    "gene_collection_name",
    "gene_point_id",
    "genes_covered",
    "infer_species",
    "load_hcop",
    "load_housekeeping",
    "map_adata",
    "map_var_names",
    "resolve_species",
    "save_pending_genes",
    "text_sha256",
]
