"""Text encoder serving choice, by measurement: reports/bench_text.json.

    .venv/bin/python scripts/bench_text.py [--repeats 3] [--requests 150] [--out reports]

Serving needs a deal's text embedding at request time. Two designs (issue 18, item 3):
  A. encode per request: the ONNX export of the encoder in onnxruntime (what Triton's Python/ORT backend
     would run), or sentence-transformers in torch (the reference);
  B. encode at write time (when a note is saved) and fetch the vector by id at request time: from the
     on-disk cache per text hash (text/cache.py) or from memory (a feature-store row).
Per repeat (a fresh sample of texts): single-request latency p50/p99 of each, one thread each (the serving
shape: one request, one core), plus write-time throughput at batch 32, plus ONNX-vs-torch parity. Texts are
the simulator's deal profiles with their notes (realistic lengths). Triton itself is not in the loop: its
own per-request overhead (~0.6 ms p50 over HTTP for an identity model, ../shared/TRITON_ON_CPU.md) would
add to A, so A here is a lower bound.

`--pii` adds the "pii_in_prompts" section (issue 18 goal: 0 PII in any prompt): for every deal open at
several as_of dates in simulated CRMs (3 seeds), the three LLM prompts are built as `fulqrun-ml insights`
builds them, and counted are (a) the notes that carried planted PII before scrubbing, (b) prompts the PII
guard would refuse, and (c) independently of the detector, prompts containing any contact email, phone, or a
name the CRM knows (a plain substring search).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.data.pii import PIIScrubber, names_from_crm, scrubber_for_crm
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.insights.facts import deal_facts
from fulqrun_ml.insights.pii_guard import PIIGuard, PIILeakError
from fulqrun_ml.insights.writer import KINDS, SYSTEM, build_prompt
from fulqrun_ml.machine import machine_info
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.search.deal_profiles import OPEN_STAGES, profiles, stage_entries
from fulqrun_ml.text.cache import EmbeddingCache, text_key
from fulqrun_ml.text.encoder import EMBEDDING_DIM, MODEL_TAG, TorchBackend
from fulqrun_ml.text.onnx_encoder import OnnxBackend, export_text_encoder
from fulqrun_ml.text.validation import validate_text


def timed(fn: Callable[[Any], object], items: list[Any]) -> dict[str, float]:
    """Wall clock per call, and the thread's CPU time beside it (on a shared machine the wall-clock p99
    includes waiting for a core; the CPU time does not)."""
    fn(items[0])  # warm up
    wall, cpu = [], []
    for item in items:
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(item)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.thread_time() - start_cpu) * 1000)
    return {
        "p50_ms": round(float(np.percentile(wall, 50)), 4),
        "p99_ms": round(float(np.percentile(wall, 99)), 4),
        "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 4),
        "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 4),
    }


def throughput(embed: Callable[[list[str]], np.ndarray], texts: list[str], batch: int = 32) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return round(len(texts) / (time.perf_counter() - start), 1)


def pii_in_prompts(seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Build every prompt for every open deal at several as_of dates and look for PII in it (see docstring)."""
    rows = []
    for seed in seeds:
        tables = simulate_crm(n_opportunities=400, n_companies=100, n_reps=8, seed=seed).tables
        known = names_from_crm(tables)
        scrubber, guard = PIIScrubber(known), PIIGuard(known)
        needles = {v.lower() for v in tables.contacts["email"].dropna()} | set(tables.contacts["phone"].dropna())
        needles |= {p.split("-", 1)[-1] for p in tables.contacts["phone"].dropna()}  # "555-4428" without "+1-"
        needles |= {n.lower() for n in known if len(n) >= 5}
        needles = {n.lower() for n in needles}
        bodies = [str(b) for b in tables.notes["body"].dropna()]
        notes_with_pii = int(sum(bool(scrubber.find(b)) for b in bodies))
        # Positive control of the substring search: it must find the planted PII in the raw notes.
        raw_hits = int(sum(any(needle in b.lower() for needle in needles) for b in bodies))
        prompts = refused = leaked = 0
        history = tables.stage_history.sort_values("changed_at")
        for as_of in pd.date_range("2024-03-01", "2025-12-01", freq="MS", tz="UTC"):
            stages = history[history["changed_at"] <= as_of].groupby("opportunity_id")["to_stage"].last()
            for deal in stages[stages.isin(OPEN_STAGES)].index:
                facts = deal_facts(tables, deal, as_of, scrubber)
                for kind in KINDS:
                    prompt = build_prompt(kind, facts)
                    prompts += 1
                    try:
                        guard.check(SYSTEM, prompt)
                    except PIILeakError:
                        refused += 1
                    lowered = prompt.lower()
                    leaked += any(needle in lowered for needle in needles)
        rows.append(
            {
                "seed": seed,
                "notes": int(tables.notes["body"].notna().sum()),
                "notes_with_pii": notes_with_pii,
                "raw_notes_with_known_pii_substring": raw_hits,
                "prompts": prompts,
                "refused_by_guard": refused,
                "with_known_pii_substring": leaked,
            }
        )
        print(rows[-1], flush=True)
    return {
        "goal": "0 PII in any prompt",
        "seeds": rows,
        "prompts": sum(r["prompts"] for r in rows),
        "with_known_pii_substring": sum(r["with_known_pii_substring"] for r in rows),
        "refused_by_guard": sum(r["refused_by_guard"] for r in rows),
        "machine": machine_info(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pii", action="store_true", help="only (re)compute the pii_in_prompts section")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args()
    path = Path(args.out) / "bench_text.json"
    if args.pii:
        report = json.loads(path.read_text()) if path.exists() else {"machine": machine_info()}
        report["pii_in_prompts"] = pii_in_prompts()
        atomic_write_json(path, report)
        print({k: v for k, v in report["pii_in_prompts"].items() if k != "machine"})
        return
    torch.set_num_threads(1)
    tables = simulate_crm(n_opportunities=600, n_companies=150, n_reps=12, seed=7).tables
    scrubber = scrubber_for_crm(tables)
    corpus = [scrubber.scrub(t) for t in profiles(tables, stage_entries(tables))["text"]]
    lengths = np.array([len(t) for t in corpus])
    work = Path(tempfile.mkdtemp(prefix="bench_text_"))
    export_start = time.perf_counter()
    onnx_path = export_text_encoder(work / "text_encoder.onnx")
    export_s = time.perf_counter() - export_start
    torch_backend, onnx_backend = TorchBackend(batch_size=32), OnnxBackend(onnx_path, threads=1)
    report: dict = {
        "machine": machine_info(),
        "texts": {
            "source": "simulator deal profiles with notes, scrubbed",
            "n": len(corpus),
            "chars_p50": int(np.median(lengths)),
            "chars_p99": int(np.percentile(lengths, 99)),
        },
        "onnx": {"export_s": round(export_s, 1), "file_mb": round(onnx_path.stat().st_size / 2**20, 1)},
        "repeats": [],
    }
    for repeat in range(args.repeats):
        rng = np.random.default_rng(repeat)
        sample = [corpus[i] for i in rng.choice(len(corpus), size=min(args.requests, len(corpus)), replace=False)]
        reference = torch_backend.embed(sample)
        onnx_vectors = onnx_backend.embed(sample)
        cache = EmbeddingCache(work / f"cache{repeat}", MODEL_TAG, EMBEDDING_DIM)
        memory = {}
        for i, (text, vector) in enumerate(zip(sample, reference, strict=True)):
            cache.put(text_key(text, MODEL_TAG), vector)
            memory[f"note-{i}"] = vector
        keys = [text_key(t, MODEL_TAG) for t in sample]
        row = {
            "repeat": repeat,
            "parity_max_abs_diff": float(np.abs(onnx_vectors - reference).max()),
            "parity_min_cosine": float((onnx_vectors * reference).sum(axis=1).min()),
            "per_request": {
                "A_onnxruntime_encode": timed(lambda t: onnx_backend.embed([t]), sample),
                "A_torch_encode": timed(lambda t: torch_backend.embed([t]), sample),
                "B_fetch_disk_cache": timed(cache.get, keys),
                "B_fetch_memory": timed(memory.__getitem__, list(memory)),
                "validate_and_scrub_only": timed(lambda t: scrubber.scrub(validate_text(t)), sample),
            },
            "write_time_texts_per_s_batch32": {
                "onnxruntime": throughput(onnx_backend.embed, sample),
                "torch": throughput(torch_backend.embed, sample),
            },
        }
        report["repeats"].append(row)
        print(row, flush=True)
    names = list(report["repeats"][0]["per_request"])
    keys = ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms")
    report["headline"] = {
        name: {key: t_interval([r["per_request"][name][key] for r in report["repeats"]]) for key in keys}
        for name in names
    }
    onnx_p99 = report["headline"]["A_onnxruntime_encode"]["p99_ms"]["mean"]
    fetch_p99 = report["headline"]["B_fetch_disk_cache"]["p99_ms"]["mean"]
    report["decision"] = (
        "B: embeddings are computed at write time (text/encoder.py with its cache, ONNX or torch) and fetched by "
        f"id at request time: disk fetch p99 {fetch_p99:.2f} ms against {onnx_p99:.1f} ms to encode one text in "
        "onnxruntime (before any Triton overhead), and the request carries no free text to validate or scrub."
        if fetch_p99 < onnx_p99
        else f"A: encoding per request (p99 {onnx_p99:.1f} ms) is not slower than fetching ({fetch_p99:.2f} ms)"
    )
    report["machine_after"] = machine_info()
    atomic_write_json(path, report)
    print(report["headline"], report["decision"])


if __name__ == "__main__":
    main()
