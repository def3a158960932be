"""GPU checks run on a lent accelerator: MiniLM embedding throughput, gene vectors, SupCon training.

Usage (on the GPU machine, from the repo root): ``python3 scripts/gpu_check.py OUT_DIR``. It loads only the
modules it needs (the encoder and SupCon modules), so the embedded-store dependencies need not be there.
Writes ``gene_vectors_*.npy`` (float16, the model runs in half precision on CUDA), ``gene_symbols.json`` and
``gpu_report.json`` into OUT_DIR.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

root = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(root))
# Import indexer's encoder and SupCon modules without running indexer/__init__ (which needs Qdrant Edge).
pkg = types.ModuleType("indexer")
pkg.__path__ = [str(root / "indexer")]
sys.modules["indexer"] = pkg

import torch

import indexer.encoders._sentence as sentence
from indexer.cells.supcon import train_supcon
from indexer.encoders import embed_texts, get_encoder
from schemas import RefineParams

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
report: dict[str, object] = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
model_dir = root / ".gpu" / "minilm"
if model_dir.is_dir():
    sentence.minilm_model_path = lambda: model_dir  # the same weights, shipped as float16
rows = [json.loads(line) for line in gzip.open(root / ".gpu" / "texts.jsonl.gz", "rt")]
texts = [r["text"] for r in rows]
encoder = get_encoder("minilm")
encoder.embed_batch(texts[:64])  # load and warm up
torch.cuda.synchronize()
for bs in (256, 1024):
    t0 = time.perf_counter()
    vecs = embed_texts(encoder, texts, batch_size=bs)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    report[f"minilm_texts_per_s_batch{bs}"] = len(texts) / dt
    print(f"minilm batch {bs}: {len(texts)} texts in {dt:.2f} s = {len(texts) / dt:.0f} texts/s", flush=True)
half = vecs.astype(np.float16)
n = len(half) // 2 + 1
np.save(out / "gene_vectors_0.npy", half[:n])
np.save(out / "gene_vectors_1.npy", half[n:])
(out / "gene_symbols.json").write_text(json.dumps([r["symbol"] for r in rows]))

rng = np.random.default_rng(0)
for n_cells in (5000, 50000):
    centres = rng.normal(size=(10, 384))
    labels = rng.integers(0, 10, n_cells)
    v1 = centres[labels] + 2.0 * rng.normal(size=(n_cells, 384))
    v1 /= np.linalg.norm(v1, axis=1, keepdims=True)
    v2 = v1 + 0.1 * rng.normal(size=v1.shape)
    v2 /= np.linalg.norm(v2, axis=1, keepdims=True)
    for device in ("cuda", "cpu") if n_cells == 5000 else ("cuda",):
        t0 = time.perf_counter()
        model, rep = train_supcon(
            v1.astype(np.float32),
            v2.astype(np.float32),
            labels.astype(str),
            params=RefineParams(method="supcon"),
            device=device,
        )
        dt = time.perf_counter() - t0
        key = f"supcon_{n_cells}_{device}"
        report[key] = {
            "seconds": dt,
            "epochs": rep.epochs_run,
            "best_epoch": rep.best_epoch,
            "val_macro_f1": rep.best_val_metric,
        }
        print(key, report[key], flush=True)
(out / "gpu_report.json").write_text(json.dumps(report, indent=1))
