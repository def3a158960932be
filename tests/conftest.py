"""Shared fixtures: a small labelled synthetic AnnData with real gene symbols, stores, a fast encoder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from indexer import Settings, VectorStore, open_store
from schemas import CellVectorSpec

# Real human symbols with RefSeq summaries: four "programs" of marker genes plus shared genes.
PROGRAMS = {
    "T cell": ["CD3E", "CD3D", "CD2", "IL7R", "CD28", "LCK", "ZAP70", "CD247"],
    "B cell": ["MS4A1", "CD79A", "CD79B", "CD19", "PAX5", "BLK", "CD22", "FCRL1"],
    "Monocyte": ["CD14", "LYZ", "FCGR3A", "CSF1R", "S100A8", "S100A9", "ITGAM", "CD68"],
    "NK cell": ["NCAM1", "KLRD1", "GNLY", "NKG7", "KLRF1", "PRF1", "GZMB", "KLRC1"],
}
SHARED = ["ACTB", "GAPDH", "B2M", "TMSB4X", "EEF1A1", "RPL13", "RPS6", "MALAT1", "FTL", "TPT1",
          "MT-CO1", "MT-ND1", "HLA-A", "HLA-B", "PTPRC", "CORO1A"]
FAST_ENCODER = "random:32"
"""Deterministic, instant encoder for unit tests (a fixed random vector per gene symbol)."""


def make_adata(n_per_class: int = 30, *, seed: int = 0, counts: bool = True) -> ad.AnnData:
    """Return cells × genes with one marker program per class, raw counts by default."""
    rng = np.random.default_rng(seed)
    genes = [g for prog in PROGRAMS.values() for g in prog] + SHARED
    col = {g: i for i, g in enumerate(genes)}
    rows, labels = [], []
    for label, prog in PROGRAMS.items():
        for _ in range(n_per_class):
            lam = np.full(len(genes), 0.3)
            lam[[col[g] for g in SHARED]] = rng.uniform(2, 6, len(SHARED))
            lam[[col[g] for g in prog]] = rng.uniform(4, 12, len(prog))
            rows.append(rng.poisson(lam))
            labels.append(label)
    x = np.asarray(rows, dtype=np.float32)
    if not counts:
        x = np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels), "batch": np.where(np.arange(len(labels)) % 2, "b1", "b2")},
        index=[f"cell{i}" for i in range(len(labels))],
    )
    return ad.AnnData(sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=genes))


@pytest.fixture
def adata() -> ad.AnnData:
    """120 labelled cells (4 types) × 48 genes, raw counts."""
    return make_adata()


@pytest.fixture
def query_adata() -> ad.AnnData:
    """40 cells from the same programs, another seed."""
    return make_adata(10, seed=1)


@pytest.fixture(params=["edge", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorStore]:
    """An empty store on each backend: embedded Qdrant Edge and qdrant-client's in-memory mode."""
    location = str(tmp_path / "store") if request.param == "edge" else ":memory:"
    with open_store(location) as st:
        yield st


@pytest.fixture
def edge_store(tmp_path: Path) -> Iterator[VectorStore]:
    """An empty embedded store in a temporary directory."""
    with open_store(tmp_path / "store") as st:
        yield st


@pytest.fixture
def fast_spec() -> CellVectorSpec:
    """The paper's mode with the instant random encoder."""
    return CellVectorSpec(mode="paper", encoder=FAST_ENCODER)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real gene description data folder (the suite needs it: set CELLVEC_DATA_DIR)."""
    d = Settings().data_dir
    if not (Path(d) / "gene_text").is_dir():
        pytest.fail(f"data folder {d} is absent: set CELLVEC_DATA_DIR or run `cellvec genes fetch`")
    return Path(d)


@pytest.fixture(scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cellvec-cache")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, _cache_dir: Path) -> None:
    """Never reach a model hub from tests; keep cellvec's caches (parsed gene catalogs) out of ``~/.cache``."""
    monkeypatch.setenv("CELLVEC_CACHE_DIR", str(_cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    if "CELLVEC_QDRANT_URL" not in os.environ:
        monkeypatch.delenv("CELLVEC_STORE", raising=False)


# ---------------------------------------------------------------- species and orthologs

class FakeCatalog:
    """Resolves exact symbols, then upper-cased ones, then ids, like :meth:`indexer.GeneCatalog.resolve`."""

    def __init__(self, symbols: list[str], ids: dict[str, str] | None = None) -> None:
        self.exact = {s: s for s in symbols} | (ids or {})
        self.upper = {s.upper(): s for s in symbols}

    def resolve(self, names: list[str]) -> np.ndarray:
        return np.array([self.exact.get(n) or self.upper.get(str(n).upper(), "") for n in names], dtype=object)


FAKE_HUMAN = [f"GENE{i}" for i in range(60)] + ["CD3E", "CD19", "LYZ", "HLA-DRA", "MS4A1", "MT-ND5"]
FAKE_MOUSE = [f"Gene{i}" for i in range(50)] + [f"Gm{i}" for i in range(30)] + [
    "Cd3e", "Cd19", "Lyz1", "Lyz2", "H2-Ea", "Ms4a1", "mt-Nd5", "0610007P14Rik",
]  # fmt: skip


@pytest.fixture
def fake_catalogs() -> dict[str, FakeCatalog]:
    """Tiny human and mouse catalogs (symbols and a few Entrez ids) for species and ortholog unit tests."""
    return {
        "human": FakeCatalog(FAKE_HUMAN, ids={"916": "CD3E", "930": "CD19"}),
        "mouse": FakeCatalog(FAKE_MOUSE, ids={"12501": "Cd3e", "12478": "Cd19"}),
    }


@pytest.fixture(scope="session")
def actinn(data_dir: Path) -> ad.AnnData:
    """Real mouse immune cells (Tabula Muris via ACTINN): 1,000 cells x 19,371 genes, raw counts."""
    path = data_dir / "datasets" / "actinn_tabula_muris_immune.h5ad"
    if not path.is_file():
        pytest.skip(f"{path} is absent (see the data folder's README)")
    return ad.read_h5ad(path)


@pytest.fixture(scope="session")
def pbmc() -> ad.AnnData:
    """Real human PBMCs: scanpy's pbmc68k_reduced ``.raw`` (700 cells x 765 genes, log-normalised)."""
    import warnings

    import scanpy as sc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sc.datasets.pbmc68k_reduced().raw.to_adata()


def as_mouse(adata: ad.AnnData) -> ad.AnnData:
    """The cells with each human symbol replaced by its chosen HCOP mouse ortholog (real gene data)."""
    from indexer import OrthologMap

    best = OrthologMap.load("human", "mouse", data_dir=Settings().data_dir).best.set_index("q")["r"]
    out = adata.copy()
    out.var_names = [str(best.get(g, g)) for g in adata.var_names]
    out.var_names_make_unique()
    return out


def forbid_catalog_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any read of a gene catalog's files fail, as in a new process with nothing in memory."""
    import indexer.genes._catalog as catalog_module

    def untouchable(self: object) -> None:
        msg = "the catalog was read"
        raise AssertionError(msg)

    catalog_module._CATALOGS.clear()  # a new process: nothing in memory
    monkeypatch.setattr(catalog_module.GeneCatalog, "_load_names", untouchable)
    monkeypatch.setattr(catalog_module.GeneCatalog, "_load_entries", untouchable)
    monkeypatch.setattr(catalog_module, "read_genes", untouchable)
