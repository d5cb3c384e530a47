"""`fulqrun-ml similar`: won deals most like this one, and what they did next, as JSON.

    fulqrun-ml similar [--deal-id ID] [--as-of 2025-06-30] [--k 5] [--outcome won|lost|open] [--same-segment]
                       [--crm DIR] [--config configs/search/default.yaml] [--out answer.json]

Without --deal-id the first deal open at as_of in its latest stage is asked about (a demo on the
simulator). Settings come from configs/search/default.yaml; flags override them. Embeddings are cached per
scrubbed-text hash under `cache_dir`, so a second question about the same CRM encodes only the new deal.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.search.deal_profiles import OPEN_STAGES
from fulqrun_ml.search.index import IndexConfig
from fulqrun_ml.search.similar import OUTCOMES, SimilarDealSearch
from fulqrun_ml.text.encoder import TextEncoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml similar", description=__doc__.split("\n")[0])
    parser.add_argument("--deal-id", help="the opportunity id to find similar deals for")
    parser.add_argument("--as-of", help="answer as of this date (default: the CRM's extraction time)")
    parser.add_argument("--k", type=int, help="how many similar deals")
    parser.add_argument("--outcome", choices=OUTCOMES, help="outcome of the similar deals (default: won)")
    parser.add_argument("--same-segment", action="store_true", default=None, help="only deals in the same segment")
    parser.add_argument("--crm", type=Path, help="a CRM export directory (Parquet/CSV tables)")
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "search" / "default.yaml")
    parser.add_argument("--out", type=Path, help="write the answer here (JSON) instead of printing it")
    return parser


def load_config(path: Path) -> dict:
    if not path.exists():
        raise FulqrunMLError(f"search config '{path}' does not exist")
    return yaml.safe_load(path.read_text()) or {}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config)
    tables = DirectorySource(args.crm).load() if args.crm is not None else simulate_crm(**cfg["simulate"]).tables
    cache_dir = Path(cfg.get("cache_dir", "~/.cache/fulqrun_ml/text_embeddings")).expanduser()
    encoder = TextEncoder(cache_dir=cache_dir if cache_dir.is_absolute() else REPO_ROOT / cache_dir)
    search = SimilarDealSearch(tables, encoder, IndexConfig(**cfg.get("index", {})))
    as_of = pd.Timestamp(args.as_of, tz="UTC") if args.as_of else None
    deal_id = args.deal_id or _an_open_deal(tables.opportunities)
    answer = search.similar(
        deal_id,
        as_of=as_of,
        k=args.k or int(cfg.get("k", 5)),
        outcome=args.outcome or cfg.get("outcome", "won"),
        same_segment=bool(args.same_segment if args.same_segment is not None else cfg.get("same_segment", False)),
    )
    if args.out is not None:
        atomic_write_json(args.out, answer.to_dict())
        print(f"{len(answer.similar)} similar deals for {deal_id} -> {args.out}")
    else:
        print(json.dumps(answer.to_dict(), indent=2))
    return 0


def _an_open_deal(opportunities: pd.DataFrame) -> str:
    """A demo question: an open deal in the latest stage reached by any."""
    late = opportunities[opportunities["stage"].isin(OPEN_STAGES)].sort_values(
        "stage", key=lambda s: s.map(OPEN_STAGES.index), ascending=False
    )
    if late.empty:
        raise FulqrunMLError("the CRM has no open deal: pass --deal-id and an --as-of when it was open")
    return str(late["id"].iloc[0])
