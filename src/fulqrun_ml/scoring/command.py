"""`fulqrun-ml score`: the command-line face of `fulqrun_ml.scoring.bulk.score_table`.

    fulqrun-ml score --input deals.parquet --output scores.parquet [--version 3] [--keep opportunity_id]

Prints one JSON line: rows, seconds, rows/s, output path and seconds per stage.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from fulqrun_ml.registry.store import get_version
from fulqrun_ml.scoring.bulk import DEFAULT_CHUNK_ROWS, score_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml score", description="score a Parquet/CSV table offline")
    parser.add_argument("--input", required=True, help="Parquet file or directory, or CSV")
    parser.add_argument("--output", required=True, help="Parquet file written atomically")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--keep", default=None, help="comma-separated input columns to copy (default: non-features)")
    parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    parser.add_argument("--workers", type=int, default=None, help="chunks scored at once (default: one per core)")
    parser.add_argument("--graph", default=None, help="another graph of the version, e.g. model.optimized.onnx")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    version = get_version(Path(args.models_dir), args.model, args.version)
    keep = [c.strip() for c in args.keep.split(",") if c.strip()] if args.keep is not None else None
    result = score_table(
        version,
        Path(args.input),
        Path(args.output),
        keep_columns=keep,
        chunk_rows=args.chunk_rows,
        workers=args.workers,
        model_file=Path(args.graph) if args.graph else None,
    )
    summary = {
        "model": f"{version.name} v{version.version}",
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "rows_per_s": round(result.rows_per_s),
        "output": str(result.output),
        "seconds_by_stage": result.timings,
    }
    print(json.dumps(summary))
    return 0
