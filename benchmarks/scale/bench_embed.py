"""Embedding throughput: embed N gene descriptions with one encoder and print texts/s and the device.

Usage::

    python scripts/bench_embed.py --encoder minilm -n 200
    python scripts/bench_embed.py --encoder hf:/models/biobert -n 2000 --device cuda --batch-size 128

Texts are real NCBI RefSeq summaries ("SYMBOL: full name. summary") when the data folder has them,
else synthetic texts of the same length. Model loading is timed apart from embedding. CPU time is printed
too: unlike the wall clock, it stays meaningful on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer import Settings, get_encoder
from indexer.encoders import count_truncated, embed_texts


def gene_texts(data_dir: Path, n: int) -> tuple[list[str], str]:
    path = data_dir / "gene_text" / "refseq_summaries_human_by_symbol.tsv.gz"
    if path.is_file():
        with gzip.open(path, "rt") as handle:
            rows = csv.DictReader(io.TextIOWrapper(handle.buffer, encoding="utf-8"), delimiter="\t")
            texts = [
                f"{r['symbol']}: {r['full_name']}. {r['summary']}"
                for _, r in zip(range(n), rows, strict=False)
            ]
        return texts, str(path)
    filler = "This gene encodes a protein involved in signal transduction and cell adhesion. "
    return [f"GENE{i}: synthetic gene {i}. " + filler * 6 for i in range(n)], "synthetic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("-n", type=int, default=200, help="number of texts")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: automatic)")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    settings = Settings(device=args.device) if args.device else Settings()
    texts, source = gene_texts(args.data_dir or settings.data_dir, args.n)
    encoder = get_encoder(args.encoder, settings=settings)

    started = time.perf_counter()
    encoder.embed_batch(texts[:2])  # loads the model and warms up kernels
    load_s = time.perf_counter() - started

    started, cpu_started = time.perf_counter(), time.process_time()
    vectors = embed_texts(encoder, texts, batch_size=args.batch_size)
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = f"cpu, {torch.get_num_threads()} threads"
    name = torch.cuda.get_device_name() if device.startswith("cuda") else cpu
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"encoder     {encoder.id} (dim {vectors.shape[1]})")
    print(f"device      {device} ({name})")
    print(f"texts       {len(texts)} from {source}, mean {mean_chars:.0f} chars")
    print(f"truncated   {count_truncated(encoder, texts)}")
    print(f"load        {load_s:.2f} s")
    print(f"embed       {elapsed:.2f} s = {len(texts) / elapsed:.1f} texts/s")
    # CPU seconds do not grow when other processes share the cores, unlike the wall clock.
    print(f"cpu time    {cpu_s:.2f} s = {len(texts) / cpu_s:.1f} texts per CPU-second")


if __name__ == "__main__":
    main()
