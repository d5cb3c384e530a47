"""Text encoder serving choice, by measurement: reports/bench_text.json.

    .venv/bin/python scripts/bench_text.py [--repeats 3] [--requests 150] [--out reports]

Serving needs a deal's text embedding at request time. Two designs (issue 18, item 3):
  A. encode per request: the ONNX export of the encoder in onnxruntime (what Triton's Python/ORT backend
     would run), or sentence-transformers in torch (the reference);
  B. encode at write time (when a note is saved) and fetch the vector by id at request time: from the
     on-disk cache per text hash (text/cache.py) or from memory (a feature-store row).
Per repeat (a fresh sample of texts): single-request latency p50/p99 of each, one thread each (the serving
shape: one request, one core), plus write-time throughput at batch 32, plus ONNX-vs-torch parity. Texts are
the simulator's deal profiles with their notes (realistic lengths).
Served rows, measured in the same run: `A_triton_encode` sends the text to the ONNX encoder served by a real
Triton (serving/python_text_encoder, gRPC, one request at a time), and `B_fetch_redis_by_id` reads the deal's
stored note embedding from a real Redis by id, as the online store holds it (the `deal_note_embedding` view,
online/note_embeddings.py: one HMGET of 384 fields, parsed to float32), the way the by-id endpoint reads rows.

`--pii` adds the "pii_in_prompts" section (issue 18 goal: 0 PII in any prompt): for every deal open at
several as_of dates in simulated CRMs (3 seeds), the three LLM prompts are built as `fulqrun-ml insights`
builds them, and counted are (a) the notes that carried planted PII before scrubbing, (b) prompts the PII
guard would refuse, and (c) independently of the detector, prompts containing any contact email, phone, or a
name the CRM knows (a plain substring search).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import tritonclient.grpc as grpcclient

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.data.pii import PIIScrubber, names_from_crm, scrubber_for_crm
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.insights.facts import deal_facts
from fulqrun_ml.insights.pii_guard import PIIGuard, PIILeakError
from fulqrun_ml.insights.writer import KINDS, SYSTEM, build_prompt
from fulqrun_ml.machine import machine_info
from fulqrun_ml.online.note_embeddings import NAMES, note_embedding_view
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.search.deal_profiles import OPEN_STAGES, profiles, stage_entries
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.text_encoder_repo import MODEL_NAME, write_text_encoder_model
from fulqrun_ml.text.cache import EmbeddingCache, text_key
from fulqrun_ml.text.encoder import EMBEDDING_DIM, MODEL_TAG, TextEncoder, TorchBackend
from fulqrun_ml.text.onnx_encoder import OnnxBackend, export_text_encoder
from fulqrun_ml.text.validation import validate_text

REDIS_SCRIPT = Path(__file__).resolve().parent / "redis.sh"


def start_redis(data_dir: Path) -> str:
    """A throwaway local Redis for the fetch row (scripts/redis.sh): its URL."""
    done = subprocess.run([str(REDIS_SCRIPT), "start", "--data-dir", str(data_dir)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_text: cannot start Redis: {done.stderr[-400:]}")
    return done.stdout.strip()


def triton_embedder(client: grpcclient.InferenceServerClient) -> Callable[[str], np.ndarray]:
    """One request per text to the served encoder, as a caller with one note would send it."""

    def embed(text: str) -> np.ndarray:
        tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=object))
        return client.infer(MODEL_NAME, [tensor]).as_numpy("embedding")[0]

    return embed


def redis_fetcher(store: OnlineStore, key: Callable[[str], str]) -> Callable[[str], np.ndarray]:
    """HMGET of the 384 stored fields of one deal, parsed: what the by-id backend does per row."""
    fields = list(NAMES)

    def fetch(entity: str) -> np.ndarray:
        return np.array(store.client.hmget(key(entity), fields), dtype=np.float32)

    return fetch


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
    write_text_encoder_model(work / "triton", onnx_path)
    redis_dir = work / "redis"
    store = OnlineStore(start_redis(redis_dir), socket_timeout=2.0)
    view = note_embedding_view(TextEncoder(backend=onnx_backend))
    triton = TritonServer(work / "triton").start()
    triton_client = grpcclient.InferenceServerClient(triton.grpc_url)
    triton_embed, redis_fetch = triton_embedder(triton_client), redis_fetcher(store, view.key)
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
        deals = [f"deal-{repeat}-{i}" for i in range(len(sample))]
        stored = pd.DataFrame(reference.astype(np.float64), columns=list(NAMES))
        stored.insert(0, "as_of", pd.Timestamp.now(tz="UTC").floor("ms"))
        stored.insert(0, "opportunity_id", deals)
        store.write(view, stored)
        served = np.stack([triton_embed(t) for t in sample])
        fetched = np.stack([redis_fetch(d) for d in deals])
        row = {
            "repeat": repeat,
            "parity_max_abs_diff": float(np.abs(onnx_vectors - reference).max()),
            "triton_parity_max_abs_diff": float(np.abs(served - reference).max()),
            "redis_roundtrip_max_abs_diff": float(np.abs(fetched - reference).max()),
            "parity_min_cosine": float((onnx_vectors * reference).sum(axis=1).min()),
            "per_request": {
                "A_onnxruntime_encode": timed(lambda t: onnx_backend.embed([t]), sample),
                "A_torch_encode": timed(lambda t: torch_backend.embed([t]), sample),
                "A_triton_encode": timed(triton_embed, sample),
                "B_fetch_redis_by_id": timed(redis_fetch, deals),
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
    triton_client.close()
    triton.stop()
    subprocess.run([str(REDIS_SCRIPT), "stop", "--data-dir", str(redis_dir), "--purge"], capture_output=True)
    names = list(report["repeats"][0]["per_request"])
    keys = ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms")
    report["headline"] = {
        name: {key: t_interval([r["per_request"][name][key] for r in report["repeats"]]) for key in keys}
        for name in names
    }
    head = report["headline"]
    triton_p50, triton_p99 = (head["A_triton_encode"][k]["mean"] for k in ("p50_ms", "p99_ms"))
    fetch_p50, fetch_p99 = (head["B_fetch_redis_by_id"][k]["mean"] for k in ("p50_ms", "p99_ms"))
    report["decision"] = (
        "B: embeddings are computed at write time (the stream worker embeds a deal's notes when one changes, "
        "online/note_embeddings.py) and fetched by id at request time: Redis fetch by id p50/p99 "
        f"{fetch_p50:.2f}/{fetch_p99:.2f} ms against {triton_p50:.1f}/{triton_p99:.1f} ms to encode one text in "
        "Triton (same run, same machine), and the request carries no free text to validate or scrub."
        if fetch_p99 < triton_p99
        else f"A: encoding in Triton (p99 {triton_p99:.1f} ms) is not slower than fetching ({fetch_p99:.2f} ms)"
    )
    report["machine_after"] = machine_info()
    if path.exists() and "pii_in_prompts" in (previous := json.loads(path.read_text())):
        report["pii_in_prompts"] = previous["pii_in_prompts"]  # its own run (`--pii`), kept as measured
    atomic_write_json(path, report)
    print(report["headline"], report["decision"])


if __name__ == "__main__":
    main()
