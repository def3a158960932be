"""Fetch gene data from NCBI: the ``gene_info`` file and RefSeq summaries through E-utilities ``esummary``.

The files written have the layout and columns of the offline data folder, so :class:`GeneCatalog` reads
either without telling them apart. NCBI asks clients to make at most 3 requests per second (10 with an API
key) and to name their tool and a contact e-mail; see https://www.ncbi.nlm.nih.gov/books/NBK25497/.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from indexer._errors import DataError, InputError
from indexer.genes._files import ORTHOLOG_TABLE, TAX_ID, gene_info_path, summaries_path
from indexer.genes._http import Malformed, Session
from schemas import FetchReport, Species

if TYPE_CHECKING:
    import httpx

__all__ = ["EUTILS_BASE", "GENE_INFO_URLS", "HCOP_URL", "fetch_gene_data"]

logger = logging.getLogger(__name__)

EUTILS_BASE: Final = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
"""Base URL of NCBI E-utilities."""

GENE_INFO_URLS: Final[dict[str, str]] = {
    "human": "https://ftp.ncbi.nlm.nih.gov/gene/DATA/GENE_INFO/Mammalia/Homo_sapiens.gene_info.gz",
    "mouse": "https://ftp.ncbi.nlm.nih.gov/gene/DATA/GENE_INFO/Mammalia/Mus_musculus.gene_info.gz",
}
"""NCBI FTP (over HTTPS) ``gene_info`` file of each species."""

HCOP_URL: Final = "https://ftp.ebi.ac.uk/pub/databases/genenames/hcop/human_mouse_hcop_fifteen_column.txt.gz"
"""HGNC HCOP human-mouse ortholog table (fetched with mouse, for the ortholog summaries)."""

SUMMARY_COLUMNS: Final = (
    "entrez_id",
    "symbol",
    "Synonyms",
    "full_name",
    "type_of_gene",
    "Review_status",
    "refseq_accession_used",
    "summary",
)
"""Columns of ``refseq_summaries_<species>_by_symbol.tsv.gz``, as in the data folder."""

_MAX_BATCH: Final = 500

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` with gene ids fetched so far (resumed ones included)."""


def _parse_esummary(ids: Sequence[str]) -> Callable[[httpx.Response], dict[str, dict[str, str]]]:
    def parse(response: httpx.Response) -> dict[str, dict[str, str]]:
        try:
            payload = response.json()
        except ValueError as e:
            msg = f"not JSON ({e})"
            raise Malformed(msg) from e
        if not isinstance(payload, dict):
            msg = "the top level is not an object"
            raise Malformed(msg)
        if "error" in payload and "result" not in payload:
            msg = f"error {payload['error']!r}"
            raise Malformed(msg)
        result = payload.get("result")
        if not isinstance(result, dict):
            msg = "no 'result' object"
            raise Malformed(msg)
        records: dict[str, dict[str, str]] = {}
        for uid in ids:
            record = result.get(uid)
            if record is None:
                continue
            if not isinstance(record, dict):
                msg = f"result[{uid!r}] is not an object"
                raise Malformed(msg)
            records[uid] = {
                key: str(record.get(key) or "") for key in ("name", "description", "summary", "otheraliases")
            }
        if ids and not records and "uids" not in result:
            msg = "'result' holds none of the requested ids"
            raise Malformed(msg)
        return records

    return parse


def _read_checkpoint(path: Path) -> dict[str, dict[str, str]]:
    done: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                break  # a line cut short by an interruption; everything after it is refetched
            done[str(row["uid"])] = row
    return done


def _batches(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _download(session: Session, url: str, dest: Path, *, what: str) -> None:
    """Download ``url`` to ``dest`` (gzip-compressed; plain text is compressed on the way)."""
    part = dest.with_name(dest.name + ".part")

    def parse(response: httpx.Response) -> bytes:
        return response.content

    content: bytes = session.call(what, lambda: session.client.get(url, follow_redirects=True), parse)
    if not content.startswith(b"\x1f\x8b"):
        content = gzip.compress(content)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(content)
    part.replace(dest)


def _read_gene_info(path: Path, species: Species) -> list[dict[str, str]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            rows = [row for row in reader if row.get("#tax_id", TAX_ID[species]) == TAX_ID[species]]
            fields = reader.fieldnames or []
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        msg = f"downloaded gene_info {str(path)!r} cannot be read ({e}); delete it and fetch again"
        raise DataError(msg) from e
    missing = {"GeneID", "Symbol", "Synonyms", "description", "type_of_gene"} - set(fields)
    if missing:
        msg = (
            f"downloaded gene_info {str(path)!r} lacks the columns {sorted(missing)}; "
            "delete it and fetch again (is --gene-info-url a gene_info file?)"
        )
        raise DataError(msg)
    return rows


def fetch_gene_data(
    species: Species,
    *,
    out_dir: Path,
    api_key: str | None = None,
    email: str | None = None,
    eutils_base: str = EUTILS_BASE,
    gene_info_url: str | None = None,
    hcop_url: str | None = HCOP_URL,
    progress: Progress | None = None,
    batch_size: int = _MAX_BATCH,
    max_retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 120.0,
    refresh: bool = False,
) -> FetchReport:
    """Download NCBI ``gene_info`` and gene summaries for a species into the data-folder layout.

    Writes ``gene_text/<Species>.gene_info.gz``, ``gene_text/refseq_summaries_<species>_by_symbol.tsv.gz``,
    for mouse ``orthologs/human_mouse_hcop_fifteen_column.txt.gz``, and ``FETCHED.json``. Summaries come
    from E-utilities ``esummary`` (db=gene, JSON), in batches of at most 500 ids, at most 3 requests per
    second (10 with an API key); 429 and 5xx answers are retried with exponential backoff, honouring
    ``Retry-After``. Each batch is appended to a checkpoint, so an interrupted fetch resumes where it
    stopped.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    out_dir
        Folder to write (created); give it to ``CELLVEC_DATA_DIR`` or ``GeneCatalog.load(data_dir=...)``.
    api_key
        NCBI API key (raises the limit to 10 requests per second).
    email
        Contact address sent to NCBI with each request, as NCBI asks.
    eutils_base
        Base URL of E-utilities.
    gene_info_url
        URL of the ``gene_info`` file; default the NCBI FTP file of the species.
    hcop_url
        URL of the HCOP human-mouse ortholog table, fetched with mouse; ``None`` skips it.
    progress
        Called as ``progress(done, total)`` after each batch.
    batch_size
        Ids per ``esummary`` request (at most 500).
    max_retries
        Retries of one request before giving up.
    backoff_s
        First retry delay; doubled on each retry.
    timeout_s
        Read timeout of one request.
    refresh
        Download ``gene_info`` again and ignore an earlier run's checkpoint.

    Returns
    -------
    What was fetched; the same content is written to ``out_dir / "FETCHED.json"``.

    Raises
    ------
    InputError
        When ``species`` or ``batch_size`` is invalid.
    DataError
        When a download keeps failing or NCBI's answers stay malformed after the retries; ids fetched so
        far are kept for the next run.

    Examples
    --------
    >>> report = fetch_gene_data("human", out_dir=Path("gene-data"), email="me@example.org")  # doctest: +SKIP
    >>> GeneCatalog.load("human", data_dir=Path("gene-data"))  # doctest: +SKIP
    """
    if species not in GENE_INFO_URLS:
        msg = f"species {species!r} cannot be fetched; use 'human' or 'mouse'"
        raise InputError(msg)
    if not 1 <= batch_size <= _MAX_BATCH:
        msg = f"batch_size={batch_size} is outside 1..{_MAX_BATCH}, the most ids NCBI esummary takes at once"
        raise InputError(msg)
    out_dir = Path(out_dir)
    gene_info_url = gene_info_url or GENE_INFO_URLS[species]
    esummary_url = f"{eutils_base.rstrip('/')}/esummary.fcgi"
    info_file = out_dir / gene_info_path(species)
    summary_file = out_dir / summaries_path(species)
    checkpoint = summary_file.with_name(f".esummary_{species}.partial.jsonl")
    sources = {"gene_info": gene_info_url, "esummary": esummary_url}
    files = [gene_info_path(species), summaries_path(species)]

    session = Session(rate=10.0 if api_key else 3.0, max_retries=max_retries, backoff_s=backoff_s, timeout_s=timeout_s)
    try:
        if refresh or not info_file.is_file():
            logger.info("downloading %s", gene_info_url)
            _download(session, gene_info_url, info_file, what=f"download of {gene_info_url}")
        if species == "mouse" and hcop_url:
            hcop_file = out_dir / ORTHOLOG_TABLE
            if refresh or not hcop_file.is_file():
                _download(session, hcop_url, hcop_file, what=f"download of {hcop_url}")
            sources["orthologs"] = hcop_url
            files.append(ORTHOLOG_TABLE)
        genes = _read_gene_info(info_file, species)
        ids = list(dict.fromkeys(row["GeneID"] for row in genes))
        if refresh:
            checkpoint.unlink(missing_ok=True)
        done = _read_checkpoint(checkpoint)
        n_resumed = sum(1 for i in ids if i in done)
        todo = [i for i in ids if i not in done]
        logger.info("%d gene ids, %d already fetched, %d to fetch", len(ids), n_resumed, len(todo))
        params = {"db": "gene", "retmode": "json", "tool": "cellvec"}
        if email:
            params["email"] = email
        if api_key:
            params["api_key"] = api_key
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        if progress is not None:
            progress(n_resumed, len(ids))
        with checkpoint.open("a", encoding="utf-8") as ck:
            for batch in _batches(todo, batch_size):
                data = {**params, "id": ",".join(batch)}
                records = session.call(
                    f"esummary request to {esummary_url}",
                    lambda data=data: session.client.post(esummary_url, data=data),  # type: ignore[misc]
                    _parse_esummary(batch),
                )
                for uid in batch:
                    record = records.get(uid, {})
                    row = {
                        "uid": uid,
                        **{k: record.get(k, "") for k in ("name", "description", "summary", "otheraliases")},
                    }
                    done[uid] = row
                    ck.write(json.dumps(row) + "\n")
                ck.flush()
                if progress is not None:
                    progress(sum(1 for i in ids if i in done), len(ids))
    finally:
        session.close()

    n_summaries = _write_summaries(summary_file, genes, done)
    checkpoint.unlink(missing_ok=True)
    report = FetchReport(
        species=species,
        out_dir=str(out_dir),
        fetched_at=datetime.now(UTC).isoformat(timespec="seconds"),
        sources=sources,
        files=files,
        n_genes=len(ids),
        n_summaries=n_summaries,
        n_requests=session.n_requests,
        n_retries=session.n_retries,
        n_resumed=n_resumed,
    )
    (out_dir / "FETCHED.json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report


def _write_summaries(path: Path, genes: list[dict[str, str]], done: dict[str, dict[str, str]]) -> int:
    lines = ["\t".join(SUMMARY_COLUMNS)]
    seen: set[str] = set()
    n = 0
    for gene in genes:
        uid = gene["GeneID"]
        record = done.get(uid)
        if uid in seen or record is None:
            continue
        seen.add(uid)
        summary = " ".join(record.get("summary", "").split())
        if not summary:
            continue
        synonyms = gene.get("Synonyms", "-")
        if synonyms in ("", "-") and record.get("otheraliases"):
            synonyms = "|".join(a.strip() for a in record["otheraliases"].split(",") if a.strip())
        full_name = gene.get("description", "-")
        if full_name in ("", "-"):
            full_name = record.get("description", "")
        row = [uid, gene["Symbol"], synonyms, full_name, gene.get("type_of_gene", ""), "", "", summary]
        lines.append("\t".join(" ".join(str(v).split()) for v in row))
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with gzip.open(part, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    part.replace(path)
    return n
