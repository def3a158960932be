"""The NCBI fetcher against a local HTTP server that answers like NCBI (no network)."""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from indexer import DataError, GeneCatalog, InputError, fetch_gene_data
from indexer.genes._ncbi import SUMMARY_COLUMNS

GENE_INFO_HEADER = (
    "#tax_id\tGeneID\tSymbol\tLocusTag\tSynonyms\tdbXrefs\tchromosome\tmap_location\tdescription\t"
    "type_of_gene\tSymbol_from_nomenclature_authority\tFull_name_from_nomenclature_authority\t"
    "Nomenclature_status\tOther_designations\tModification_date\tFeature_type"
)


def _gene_info(n: int, tax: str = "9606") -> bytes:
    lines = [GENE_INFO_HEADER]
    for i in range(1, n + 1):
        xref = f"Ensembl:ENSG{i:011d}"
        lines.append(
            f"{tax}\t{i}\tGENE{i}\t-\tALIAS{i}\t{xref}\t1\t-\tgene number {i}\tprotein-coding\tGENE{i}\t"
            f"gene number {i}\tO\t-\t20240101\t-"
        )
    lines.append(f"63221\t{n + 1}\tOTHERTAXON\t-\t-\t-\tMT\t-\tnot ours\tprotein-coding\t-\t-\t-\t-\t2024\t-")
    return gzip.compress(("\n".join(lines) + "\n").encode())


@dataclass
class FakeNcbi:
    """State of the fake server: what it serves, what it was asked, and scripted failures."""

    n_genes: int = 1_200
    tax: str = "9606"
    script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    fail_after: int | None = None
    malformed: bool = False
    requests: list[tuple[float, list[str], dict[str, list[str]]]] = field(default_factory=list)
    n_ok: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    base: str = ""

    def summary(self, uid: int) -> str:
        # Every third gene has no summary, as many NCBI genes.
        return "" if uid % 3 == 0 else f"Gene {uid} does\tthings.\nIn cells."

    def esummary(self, form: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        ids = form.get("id", [""])[0].split(",")
        with self.lock:
            self.requests.append((time.monotonic(), ids, form))
            if self.script:
                return self.script.pop(0)
            if self.fail_after is not None and self.n_ok >= self.fail_after:
                return 500, {}, b"Internal Server Error"
            if self.malformed:
                return 200, {"Content-Type": "application/json"}, b'{"header": {}, "result": [1, 2'
            self.n_ok += 1
        result: dict[str, object] = {"uids": ids}
        for uid in ids:
            result[uid] = {
                "uid": uid,
                "name": f"GENE{uid}",
                "description": f"gene number {uid}",
                "summary": self.summary(int(uid)),
                "otheraliases": f"ALIAS{uid}",
            }
        body = json.dumps({"header": {"type": "esummary", "version": "0.3"}, "result": result}).encode()
        return 200, {"Content-Type": "application/json"}, body


@pytest.fixture
def ncbi() -> Iterator[FakeNcbi]:
    state = FakeNcbi()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path.endswith(".gene_info.gz"):
                self._send(200, {"Content-Type": "application/gzip"}, _gene_info(state.n_genes, state.tax))
            elif url.path.endswith("hcop_fifteen_column.txt.gz"):
                self._send(
                    200, {}, b"human_entrez_gene\thuman_symbol\tmouse_entrez_gene\tmouse_symbol\tsupport\n"
                )
            elif url.path.endswith("esummary.fcgi"):
                self._send(*state.esummary(parse_qs(url.query)))
            else:
                self._send(404, {}, b"not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            if urlparse(self.path).path.endswith("esummary.fcgi"):
                self._send(*state.esummary(form))
            else:
                self._send(404, {}, b"not found")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _fetch(ncbi: FakeNcbi, out: Path, **kwargs: object):
    kwargs.setdefault("backoff_s", 0.01)
    return fetch_gene_data(
        kwargs.pop("species", "human"),  # type: ignore[arg-type]
        out_dir=out,
        eutils_base=f"{ncbi.base}/eutils",
        gene_info_url=f"{ncbi.base}/gene/Homo_sapiens.gene_info.gz",
        hcop_url=f"{ncbi.base}/hcop/human_mouse_hcop_fifteen_column.txt.gz",
        **kwargs,  # type: ignore[arg-type]
    )


def test_batches_output_layout_and_catalog(ncbi: FakeNcbi, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    report = _fetch(ncbi, tmp_path, email="me@example.org", progress=lambda d, t: seen.append((d, t)))
    assert [len(ids) for _, ids, _ in ncbi.requests] == [500, 500, 200]
    form = ncbi.requests[0][2]
    assert form["db"] == ["gene"]
    assert form["retmode"] == ["json"]
    assert form["tool"] == ["cellvec"]
    assert form["email"] == ["me@example.org"]
    assert "api_key" not in form
    assert seen[-1] == (1_200, 1_200)
    assert report.n_genes == 1_200
    assert report.n_summaries == 800
    assert report.n_requests == 4  # gene_info + 3 esummary
    assert report.n_retries == 0
    assert report.n_resumed == 0

    fetched = json.loads((tmp_path / "FETCHED.json").read_text())
    assert fetched["sources"]["esummary"] == f"{ncbi.base}/eutils/esummary.fcgi"
    assert fetched["sources"]["gene_info"].endswith("Homo_sapiens.gene_info.gz")
    assert fetched["fetched_at"][:4].isdigit()
    with gzip.open(tmp_path / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz", "rt") as fh:
        header, first, *_ = fh.read().splitlines()
    assert header.split("\t") == list(SUMMARY_COLUMNS)
    assert first.split("\t")[:2] == ["1", "GENE1"]
    assert first.split("\t")[-1] == "Gene 1 does things. In cells."  # tabs and newlines flattened
    assert not list((tmp_path / "gene_text").glob(".esummary_*"))

    catalog = GeneCatalog.load("human", data_dir=tmp_path)
    assert catalog.resolve(["gene2", "ENSG00000000002.4", "2", "ALIAS2", "OTHERTAXON"]).tolist() == [
        "GENE2",
        "GENE2",
        "GENE2",
        "GENE2",
        "",
    ]
    text = catalog.gene_text("GENE2")
    assert text is not None
    assert text.text == "GENE2: gene number 2. Gene 2 does things. In cells."
    assert text.source == "own_summary"
    three = catalog.gene_text("GENE3")
    assert three is not None
    assert three.source == "full_name"


class FakeClock:
    """Stands in for the ``time`` module of the HTTP session: time moves only when the session sleeps.

    Request starts are then exact (the limiter's schedule), whatever the machine's load does to the real
    gaps between the fake server's arrivals.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Patch the session's clock; return the (fake) time at which each request was released."""
    import indexer.genes._http as http

    fake = FakeClock()
    monkeypatch.setattr(http, "time", fake)
    starts: list[float] = []
    real_wait = http.RateLimiter.wait

    def wait(self: http.RateLimiter) -> None:
        real_wait(self)
        starts.append(fake.now)

    monkeypatch.setattr(http.RateLimiter, "wait", wait)
    return starts


def test_rate_limit_without_and_with_api_key(ncbi: FakeNcbi, tmp_path: Path, clock: list[float]) -> None:
    ncbi.n_genes = 600
    _fetch(ncbi, tmp_path / "a", batch_size=100)
    assert len(ncbi.requests) == 6  # esummary batches (the id search before them is not recorded)
    gaps = [b - a for a, b in itertools.pairwise(clock)]
    assert gaps == pytest.approx([1 / 3] * (len(clock) - 1))  # 3 requests per second without a key
    clock.clear()
    _fetch(ncbi, tmp_path / "b", batch_size=100, api_key="SECRET")
    gaps = [b - a for a, b in itertools.pairwise(clock)]
    assert gaps == pytest.approx([0.1] * (len(clock) - 1))  # 10 per second with one
    assert ncbi.requests[-1][2]["api_key"] == ["SECRET"]


def test_retries_429_with_retry_after_and_500(ncbi: FakeNcbi, tmp_path: Path, clock: list[float]) -> None:
    ncbi.n_genes = 10
    ncbi.script = [(429, {"Retry-After": "0.6"}, b"Too Many Requests"), (500, {}, b"oops")]
    report = _fetch(ncbi, tmp_path, api_key="k")
    assert report.n_retries == 2
    assert report.n_summaries == 7
    assert len(ncbi.requests) == 3
    starts = clock[-3:]  # the esummary requests (the id search comes first)
    assert starts[1] - starts[0] == pytest.approx(0.6)  # Retry-After honoured over the 0.01 s backoff
    assert starts[2] - starts[1] == pytest.approx(0.1)  # then the backoff (0.02 s), spaced by the rate limit


def test_client_error_is_not_retried(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.n_genes = 10
    ncbi.script = [(400, {}, b"bad request")]
    with pytest.raises(DataError, match="answered HTTP 400; check the URL"):
        _fetch(ncbi, tmp_path)
    assert len(ncbi.requests) == 1


def test_resume_after_an_interrupted_fetch(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.fail_after = 1
    with pytest.raises(DataError, match=r"failed after 2 tries \(HTTP 500\).*ids already fetched are kept"):
        _fetch(ncbi, tmp_path, max_retries=1, api_key="k")
    assert not (tmp_path / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz").exists()
    assert (tmp_path / "gene_text" / ".esummary_human.partial.jsonl").is_file()
    first_run = {uid for _, ids, _ in ncbi.requests[:1] for uid in ids}
    assert len(first_run) == 500

    ncbi.fail_after = None
    ncbi.requests.clear()
    report = _fetch(ncbi, tmp_path, api_key="k")
    refetched = [uid for _, ids, _ in ncbi.requests for uid in ids]
    assert len(refetched) == 700
    assert not first_run & set(refetched)
    assert report.n_resumed == 500
    assert report.n_summaries == 800


def test_resume_tolerates_a_cut_checkpoint_line(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.n_genes = 20
    ck = tmp_path / "gene_text" / ".esummary_human.partial.jsonl"
    ck.parent.mkdir(parents=True)
    rows = [
        json.dumps({"uid": str(i), "name": "", "description": "", "summary": "old", "otheraliases": ""})
        for i in (1, 2)
    ]
    ck.write_text("\n".join(rows) + '\n{"uid": "3", "summ')
    report = _fetch(ncbi, tmp_path, api_key="k")
    assert report.n_resumed == 2
    assert sorted(int(u) for _, ids, _ in ncbi.requests for u in ids) == list(range(3, 21))


def test_malformed_answer_is_a_clear_error(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.n_genes = 10
    ncbi.malformed = True
    with pytest.raises(DataError, match=r"failed after 3 tries \(malformed answer: not JSON"):
        _fetch(ncbi, tmp_path, max_retries=2, api_key="k")
    assert len(ncbi.requests) == 3


def test_malformed_then_good_is_retried(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.n_genes = 10
    ncbi.script = [(200, {}, b'{"header": {}, "esummaryresult": ["busy"]}')]
    report = _fetch(ncbi, tmp_path, api_key="k")
    assert report.n_retries == 1
    assert report.n_summaries == 7


def test_mouse_fetch_takes_the_ortholog_table(ncbi: FakeNcbi, tmp_path: Path) -> None:
    ncbi.n_genes = 5
    ncbi.tax = "10090"
    report = _fetch(ncbi, tmp_path, species="mouse", api_key="k")
    assert "orthologs" in report.sources
    assert (tmp_path / "orthologs" / "human_mouse_hcop_fifteen_column.txt.gz").is_file()
    assert (tmp_path / "gene_text" / "Mus_musculus.gene_info.gz").is_file()
    assert report.n_genes == 5


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"outside 1\.\.500"):
        fetch_gene_data("human", out_dir=tmp_path, batch_size=501)
    with pytest.raises(InputError, match="use 'human' or 'mouse'"):
        fetch_gene_data("zebrafish", out_dir=tmp_path)  # type: ignore[arg-type]


def test_cli_fetch(ncbi: FakeNcbi, tmp_path: Path) -> None:
    from click.testing import CliRunner

    import cellvec.cli._genes  # noqa: F401  (registers the commands)
    from cellvec.cli._app import cli

    ncbi.n_genes = 12
    args = ["genes", "fetch", "--species", "human", "--out", str(tmp_path), "--api-key", "K", "--json"]
    args += ["--email", "a@b.org", "--eutils-base", f"{ncbi.base}/eutils"]
    args += ["--gene-info-url", f"{ncbi.base}/x/Homo_sapiens.gene_info.gz"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["n_summaries"] == 8
    assert data["species"] == "human"
    assert ncbi.requests[0][2]["api_key"] == ["K"]
    assert (tmp_path / "FETCHED.json").is_file()
