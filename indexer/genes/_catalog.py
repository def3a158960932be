"""Gene descriptions and gene-name resolution from NCBI ``gene_info``, RefSeq summaries and HCOP orthologs.

The text embedded for a gene is ``"SYMBOL: full name. summary"``. Human genes use their own RefSeq summary;
mouse genes use their own summary, else the summary of their human ortholog (HGNC HCOP), else only the full
name. Files are read from the data folder (``Settings().data_dir`` or ``CELLVEC_DATA_DIR``) or from a folder
written by ``cellvec genes fetch``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from indexer._errors import DataError
from indexer._settings import Settings
from indexer.genes._files import (
    GENE_INFO_NAME,
    ORTHOLOG_TABLE,
    GeneEntry,
    gene_info_path,
    read_genes,
    summaries_path,
)
from indexer.genes._index import text_sha256
from schemas import GeneText, Species

__all__ = ["GeneCatalog"]

logger = logging.getLogger(__name__)

_CATALOGS: dict[tuple[str, Path], GeneCatalog] = {}
_CACHE_FORMAT = 2
"""Bumped when the catalog's cached layout, the way files are read into it, or a memoised lookup changes."""
_MEMO_MIN = 1000
"""Lookups of at least this many names are memoised (:meth:`GeneCatalog._memo`); smaller ones are instant."""
_MEMO_KEEP = 256
"""At most this many memoised lookups are kept in the cache folder; the oldest go first."""


class GeneCatalog:
    """The genes of one species: official symbols, aliases, identifiers and description texts.

    Use :meth:`load`, which caches one catalog per species and data folder for the process.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    genes
        One entry per official symbol.
    exact
        Exact-spelling lookup: symbols, Ensembl ids, Entrez ids, unambiguous synonyms; ``None`` when it is
        read from the cache on first use.
    upper
        Upper-cased lookup for case differences, used when the exact lookup misses (``None`` like ``exact``).

    Examples
    --------
    >>> catalog = GeneCatalog.load("mouse")  # doctest: +SKIP
    >>> catalog.resolve(["rbpms", "ENSMUSG00000031586.5", "19663"])  # doctest: +SKIP
    array(['Rbpms', 'Rbpms', 'Rbpms'], dtype=object)
    """

    def __init__(
        self,
        species: Species,
        *,
        genes: dict[str, GeneEntry] | None,
        exact: dict[str, str] | None,
        upper: dict[str, str] | None,
        synonyms: dict[str, list[str]] | None,
    ) -> None:
        self.species: Species = species
        self._genes_loaded = genes
        self._exact_loaded = exact
        self._upper_loaded = upper
        self._synonyms_loaded = synonyms
        # Set by _build from the cache folder: the name lookups and the entries come from these files on first
        # use, and lookups of many names are memoised under the data files' stamp.
        self._cached_names: Path | None = None
        self._cached_genes: Path | None = None
        self._stamp: str | None = None
        self._with_text: list[str] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, species: Species, *, data_dir: Path | None = None) -> GeneCatalog:
        """Load (once per process) the catalog of a species from the data folder.

        Parameters
        ----------
        species
            ``"human"`` or ``"mouse"``.
        data_dir
            Folder with ``gene_text/`` (and ``orthologs/`` for mouse); default ``Settings().data_dir``.

        Returns
        -------
        The catalog; the same object for the same species and folder on later calls.

        Raises
        ------
        DataError
            When a file is missing or malformed; the message names the file and how to get it.
        """
        if species not in GENE_INFO_NAME:
            msg = f"species {species!r} is not supported; use 'human' or 'mouse'"
            raise DataError(msg)
        if data_dir is None:
            data_dir = Settings().data_dir
        key = (species, Path(data_dir).expanduser().resolve())
        cached = _CATALOGS.get(key)
        if cached is None:
            cached = cls._build(species, key[1])
            _CATALOGS[key] = cached
        return cached

    @classmethod
    def _build(cls, species: Species, data_dir: Path) -> GeneCatalog:
        # Parsing gene_info, the summaries and (mouse) HCOP takes seconds, and every annotate needs the
        # catalogs: the parsed catalog is kept in the cache folder, keyed by the files' paths, sizes and
        # times, as two files: the name lookups and the gene entries with their texts. Both are read on first
        # use, and a lookup of many names (a dataset's var_names) is memoised, so a second annotate of the
        # same genes reads neither (decoding them took ~1 s per annotate).
        stamp = _stamp(species, data_dir)
        names, entries = _cache_paths(species, stamp)
        if names is not None and entries is not None and names.is_file() and entries.is_file():
            catalog = cls(species, genes=None, exact=None, upper=None, synonyms=None)
            catalog._cached_names, catalog._cached_genes, catalog._stamp = names, entries, stamp
            return catalog
        catalog = cls._index(species, *read_genes(species, data_dir))
        if names is not None and entries is not None:
            kept = _write_json(names, {"exact": catalog._exact, "upper": catalog._upper})
            genes = [[g.symbol, g.entrez_id, g.full_name, g.summary, g.source] for g in catalog._genes.values()]
            kept = _write_json(entries, {"genes": genes, "synonyms": catalog._synonyms}) and kept
            catalog._stamp = stamp if kept else None
        return catalog

    def _read_cached(self, path: Path | None, *, keys: tuple[str, str], what: str) -> dict:
        """Return one cache file's JSON object, with a one-line error naming the file when it is unusable."""
        try:
            data = json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError) as e:
            msg = f"the cached {self.species} gene catalog {path} is unreadable ({e}); delete it and run again"
            raise DataError(msg) from e
        if not isinstance(data, dict) or any(k not in data for k in keys):
            msg = f"the cached {self.species} gene catalog {path} has no {what}; delete it and run again"
            raise DataError(msg)
        return data

    def _load_names(self) -> None:
        data = self._read_cached(self._cached_names, keys=("exact", "upper"), what="name lookups")
        self._exact_loaded, self._upper_loaded = dict(data["exact"]), dict(data["upper"])

    @property
    def _exact(self) -> dict[str, str]:
        if self._exact_loaded is None:
            self._load_names()
        return self._exact_loaded  # type: ignore[return-value]

    @property
    def _upper(self) -> dict[str, str]:
        if self._upper_loaded is None:
            self._load_names()
        return self._upper_loaded  # type: ignore[return-value]

    def _memo(self, kind: str, values: Sequence[str], compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Return ``compute()``, a string array aligned with ``values``, memoised in the cache folder.

        The key hashes the catalog's data stamp, ``kind`` and every value, so the same lookup of the same
        names against the same files is answered from one small file; catalogs not read through the cache
        folder, small lookups and an unwritable cache folder compute every time.
        """
        if self._stamp is None or len(values) < _MEMO_MIN:
            return compute()
        digest = hashlib.sha256(f"{self._stamp}\0{kind}\0".encode())
        digest.update("\0".join(values).encode("utf-8", "surrogatepass"))
        path = Path(Settings().cache_dir).expanduser() / "catalogs" / "memo" / f"{digest.hexdigest()[:32]}.npy"
        try:
            got = np.load(path, allow_pickle=False)
            if got.shape == (len(values),):
                return got.astype(object)
        except (OSError, ValueError, EOFError):
            pass  # not memoised yet (or a damaged file): compute and write it
        out = compute()
        _write_memo(path, np.asarray(out, dtype=str))
        return out

    def _load_entries(self) -> None:
        data = self._read_cached(self._cached_genes, keys=("genes", "synonyms"), what="gene entries")
        try:
            self._genes_loaded = {e[0]: GeneEntry(*e) for e in data["genes"]}
        except TypeError as e:
            msg = f"the cached {self.species} gene catalog {self._cached_genes} has malformed entries ({e}); delete it"
            raise DataError(msg) from e
        self._synonyms_loaded = data["synonyms"]

    @property
    def _genes(self) -> dict[str, GeneEntry]:
        if self._genes_loaded is None:
            self._load_entries()
        return self._genes_loaded  # type: ignore[return-value]

    @property
    def _synonyms(self) -> dict[str, list[str]]:
        if self._synonyms_loaded is None:
            self._load_entries()
        return self._synonyms_loaded  # type: ignore[return-value]

    @classmethod
    def _index(
        cls,
        species: Species,
        genes: dict[str, GeneEntry],
        ids: dict[str, str],
        alias_targets: dict[str, set[str]],
    ) -> GeneCatalog:
        exact: dict[str, str] = {}
        upper_official: dict[str, set[str]] = {}
        for sym in genes:
            upper_official.setdefault(sym.upper(), set()).add(sym)
        # Priority (lowest first, later writes lose): synonyms < ids < official symbols.
        synonyms: dict[str, list[str]] = {}
        upper_alias: dict[str, set[str]] = {}
        for alias, targets in alias_targets.items():
            for t in targets:
                synonyms.setdefault(alias.upper(), []).append(t)
            if alias in genes or alias.upper() in upper_official:
                continue  # a synonym that is (a case variant of) an official symbol never overrides it
            if len(targets) == 1:
                exact[alias] = next(iter(targets))
            upper_alias.setdefault(alias.upper(), set()).update(targets)
        exact.update(ids)
        exact.update({s: s for s in genes})
        upper: dict[str, str] = {}
        for key, targets in upper_alias.items():
            if len(targets) == 1:
                upper[key] = next(iter(targets))
        for key, targets in upper_official.items():
            if len(targets) == 1:
                upper[key] = next(iter(targets))
            else:
                upper.pop(key, None)
        return cls(species, genes=genes, exact=exact, upper=upper, synonyms=synonyms)

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self._genes)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._genes

    def __repr__(self) -> str:
        return f"GeneCatalog(species={self.species!r}, n_genes={len(self._genes)})"

    def resolve(self, names: Sequence[str]) -> np.ndarray:
        """Map gene names or identifiers to official symbols.

        Handles exact symbols, case differences, unambiguous synonyms and outdated symbols, Ensembl ids
        with or without a version suffix, and Entrez ids.

        Parameters
        ----------
        names
            Gene symbols or identifiers, e.g. ``adata.var_names``.

        Returns
        -------
        An object array of the same length: the official symbol for each name, ``""`` when unmapped.
        """
        names = [str(n) for n in names]
        return self._memo("resolve", names, lambda: self._resolve(names))

    def _resolve(self, names: list[str]) -> np.ndarray:
        exact = self._exact
        upper = self._upper
        out = np.empty(len(names), dtype=object)
        for i, raw in enumerate(names):
            name = raw.strip()
            hit = exact.get(name)
            if hit is None and name.startswith("ENS") and "." in name:
                hit = exact.get(name.split(".", 1)[0])
            if hit is None:
                hit = upper.get(name.upper(), "")
            out[i] = hit
        return out

    def gene_text(self, symbol: str) -> GeneText | None:
        """Return the description of one gene, or ``None`` when it has neither summary nor full name.

        Parameters
        ----------
        symbol
            Official symbol (see :meth:`resolve`).

        Returns
        -------
        The text record ``"SYMBOL: full name. summary"`` with its source.
        """
        gene = self._genes.get(symbol)
        if gene is None or gene.source == "none":
            return None
        name = gene.full_name.rstrip()
        head = f"{gene.symbol}: {name}" if name else f"{gene.symbol}:"
        if gene.summary:
            if name and not name.endswith("."):
                head += "."
            text = f"{head} {gene.summary.strip()}"
        else:
            text = head if head.endswith(".") else f"{head}."
        return GeneText(
            symbol=gene.symbol,
            species=self.species,
            entrez_id=gene.entrez_id,
            full_name=gene.full_name,
            text=text,
            source=gene.source,
        )

    def gene_texts(self, symbols: Sequence[str]) -> list[GeneText | None]:
        """Return :meth:`gene_text` for each symbol.

        Parameters
        ----------
        symbols
            Official symbols.

        Returns
        -------
        One record (or ``None``) per symbol, in order.
        """
        return [self.gene_text(s) for s in symbols]

    def sources(self, symbols: Sequence[str]) -> np.ndarray:
        """Return where each symbol's text comes from, as an array of :data:`schemas.TextSource` strings.

        Parameters
        ----------
        symbols
            Official symbols; unknown ones (and ``""``) get ``"none"``.

        Returns
        -------
        An object array of the same length.
        """
        symbols = [str(s) for s in symbols]

        def compute() -> np.ndarray:
            genes = self._genes
            return np.array([g.source if (g := genes.get(s)) is not None else "none" for s in symbols], dtype=object)

        return self._memo("sources", symbols, compute)

    def text_digests(self, symbols: Sequence[str]) -> np.ndarray:
        """Return the SHA-256 of each symbol's description text (:meth:`gene_text`), ``""`` without one.

        What a stored gene vector is checked against (:class:`indexer.GeneIndex`); memoised like
        :meth:`resolve`, so checking a dataset's cached gene vectors again reads no description.

        Parameters
        ----------
        symbols
            Official symbols.

        Returns
        -------
        An object array of hex digests, aligned with ``symbols``.
        """
        symbols = [str(s) for s in symbols]

        def compute() -> np.ndarray:
            texts = self.gene_texts(symbols)
            return np.array([text_sha256(t.text) if t is not None else "" for t in texts], dtype=object)

        return self._memo("digests", symbols, compute)

    def symbols(self) -> list[str]:
        """Return every symbol that has some text (a summary or a full name), sorted.

        Returns
        -------
        The sorted symbols.
        """
        if self._with_text is None:
            self._with_text = sorted(s for s, g in self._genes.items() if g.source != "none")
        return list(self._with_text)

    def all_symbols(self) -> list[str]:
        """Return every official symbol of the catalog, with or without text, sorted.

        Returns
        -------
        The sorted symbols.
        """
        return sorted(self._genes)

    def suggest(self, name: str, *, limit: int = 5) -> list[str]:
        """Return official symbols close to a name that did not resolve.

        Parameters
        ----------
        name
            The name as the user wrote it.
        limit
            At most this many suggestions.

        Returns
        -------
        Case-insensitive matches first, then genes that list the name as a synonym, then close spellings.
        """
        found: list[str] = []
        key = name.strip().upper()
        for sym in self._genes:
            if sym.upper() == key:
                found.append(sym)
        found.extend(self._synonyms.get(key, []))
        if len(found) < limit:
            by_upper = {s.upper(): s for s in self._genes}
            close = difflib.get_close_matches(key, list(by_upper), n=limit, cutoff=0.75)
            found.extend(by_upper[c] for c in close)
        return list(dict.fromkeys(found))[:limit]


def _stamp(species: Species, data_dir: Path) -> str | None:
    """Return a key for the files a species' catalog is read from (``None`` if a file is missing).

    It hashes every file's path, size and modification time (and :data:`_CACHE_FORMAT`), so new data files
    are read again and nothing memoised from the old ones is used.
    """
    files = [gene_info_path(species), summaries_path(species)]
    if species == "mouse":
        files += [ORTHOLOG_TABLE, summaries_path("human")]
    try:
        stats = [(str(data_dir / f), (data_dir / f).stat().st_size, (data_dir / f).stat().st_mtime_ns) for f in files]
    except OSError:
        return None  # read_genes raises the DataError that names the missing file
    return hashlib.sha256(json.dumps([_CACHE_FORMAT, species, stats]).encode()).hexdigest()[:20]


def _cache_paths(species: Species, stamp: str | None) -> tuple[Path | None, Path | None]:
    """Return the two cache files of a species' catalog with this data stamp (``None`` without a stamp)."""
    if stamp is None:
        return None, None
    folder = Path(Settings().cache_dir).expanduser() / "catalogs"
    return folder / f"{species}-{stamp}.names.json", folder / f"{species}-{stamp}.genes.json"


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> bool:
    """Write a cache file atomically; a cache folder that cannot be written is skipped (logged, ``False``)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        logger.info("gene catalog not cached in %s (%s); the next process reads the files again", path, e)
        return False
    return True


def _write_json(path: Path, data: object) -> bool:
    return _write_atomic(path, lambda f: f.write(json.dumps(data, separators=(",", ":")).encode()))


def _write_memo(path: Path, values: np.ndarray) -> None:
    """Write one memoised lookup, then drop the oldest ones beyond :data:`_MEMO_KEEP`."""
    if not _write_atomic(path, lambda f: np.save(f, values, allow_pickle=False)):
        return
    try:
        memos = sorted(path.parent.glob("*.npy"), key=lambda p: p.stat().st_mtime_ns)
        for old in memos[: max(0, len(memos) - _MEMO_KEEP)]:
            old.unlink(missing_ok=True)
    except OSError as e:  # another process pruned first
        logger.debug("memoised gene lookups not pruned (%s)", e)
