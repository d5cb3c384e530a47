"""`fulqrun-ml insights`: a deal's summary, risk narrative and next steps, as JSON.

    fulqrun-ml insights [--deal-id ID] [--as-of 2025-06-30] [--kind summary|risk|next_steps|all]
                        [--provider offline|openai|anthropic] [--model NAME] [--base-url URL]
                        [--crm DIR] [--config configs/insights/default.yaml] [--out narratives.json]

The default provider is `offline`: templates over retrieved facts, nothing leaves the machine. With
openai/anthropic the key comes from OPENAI_API_KEY / ANTHROPIC_API_KEY, every prompt passes the PII guard,
calls are cached and logged (tokens, cost; no text) to `log_path`, and each answer is grounded against the
facts. Next steps use the similar-deal search (the won deals most like this one and what they did next).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import yaml

from fulqrun_ml.data.pii import names_from_crm, scrubber_for_crm
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.insights.client import GuardedLLMClient
from fulqrun_ml.insights.facts import deal_facts
from fulqrun_ml.insights.pii_guard import PIIGuard
from fulqrun_ml.insights.providers import ProviderConfig, make_provider
from fulqrun_ml.insights.writer import KINDS, NarrativeWriter
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.search.commands import load_config as load_search_config
from fulqrun_ml.search.deal_profiles import OPEN_STAGES
from fulqrun_ml.search.index import IndexConfig
from fulqrun_ml.search.similar import SimilarDealSearch
from fulqrun_ml.text.encoder import TextEncoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml insights", description=__doc__.split("\n")[0])
    parser.add_argument("--deal-id", help="the opportunity to describe (default: an open deal, a demo)")
    parser.add_argument("--as-of", help="describe the deal as of this date (default: the CRM's extraction time)")
    parser.add_argument("--kind", choices=[*KINDS, "all"], default="all")
    parser.add_argument("--provider", choices=["offline", "openai", "anthropic"])
    parser.add_argument("--model", help="the provider's model name")
    parser.add_argument("--base-url", help="the provider's API address (default: its public API)")
    parser.add_argument("--crm", type=Path, help="a CRM export directory (Parquet/CSV tables)")
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "insights" / "default.yaml")
    parser.add_argument("--search-config", type=Path, default=CONFIG_DIR / "search" / "default.yaml")
    parser.add_argument("--out", type=Path, help="write the narratives here (JSON) instead of printing them")
    return parser


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def make_client(cfg: dict, known_names: set[str]) -> GuardedLLMClient | None:
    """None for the offline writer; otherwise the guarded client of the configured provider."""
    if cfg.get("provider", "offline") == "offline":
        return None
    if not cfg.get("model"):
        raise FulqrunMLError(f"provider {cfg['provider']} needs a model: pass --model or set model in the config")
    provider = make_provider(
        ProviderConfig(
            provider=cfg["provider"],
            model=cfg["model"],
            base_url=cfg.get("base_url"),
            timeout_s=float(cfg.get("timeout_s", 20)),
            max_retries=int(cfg.get("max_retries", 2)),
            max_tokens=int(cfg.get("max_tokens", 400)),
        )
    )
    return GuardedLLMClient(
        provider,
        PIIGuard(known_names),
        cache_dir=_path(cfg.get("cache_dir")),
        log_path=_path(cfg.get("log_path")),
        prices_per_million=cfg.get("prices_per_million") or {},
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.config.exists():
        raise FulqrunMLError(f"insights config '{args.config}' does not exist")
    cfg = yaml.safe_load(args.config.read_text()) or {}
    cfg |= {k: v for k, v in (("provider", args.provider), ("model", args.model), ("base_url", args.base_url)) if v}
    search_cfg = load_search_config(args.search_config)
    tables = DirectorySource(args.crm).load() if args.crm is not None else simulate_crm(**search_cfg["simulate"]).tables
    as_of = pd.Timestamp(args.as_of, tz="UTC") if args.as_of else pd.Timestamp(tables.extracted_at)
    deal_id = args.deal_id or _an_open_deal(tables.opportunities)
    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    similar = None
    if "next_steps" in kinds:
        cache = Path(search_cfg.get("cache_dir", "~/.cache/fulqrun_ml/text_embeddings")).expanduser()
        search = SimilarDealSearch(tables, TextEncoder(cache_dir=cache), IndexConfig(**search_cfg.get("index", {})))
        similar = search.similar(deal_id, as_of=as_of, k=int(cfg.get("similar_k", 5)))
    facts = deal_facts(tables, deal_id, as_of, scrubber_for_crm(tables), similar)
    writer = NarrativeWriter(make_client(cfg, names_from_crm(tables)))
    result = {
        "opportunity_id": deal_id,
        "as_of": as_of.isoformat(),
        "facts": facts.facts,
        "narratives": [asdict(writer.write(kind, facts)) for kind in kinds],
    }
    if args.out is not None:
        atomic_write_json(args.out, result)
        print(f"{len(kinds)} narratives for {deal_id} -> {args.out}")
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _an_open_deal(opportunities: pd.DataFrame) -> str:
    open_deals = opportunities[opportunities["stage"].isin(OPEN_STAGES)]
    if open_deals.empty:
        raise FulqrunMLError("the CRM has no open deal: pass --deal-id and an --as-of when it was open")
    return str(open_deals["id"].iloc[0])
