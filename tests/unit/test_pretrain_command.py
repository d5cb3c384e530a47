"""`fulqrun-ml pretrain`: a sequence-fusion task's encoder pretrained on its own histories and published with
lineage (deal touches, or a lead's touches and lead_events), ready for `task.sequence.init_from`."""

from __future__ import annotations

import json

import torch

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.sequence.events import SequenceVocabulary
from fulqrun_ml.sequence.pretrain import load_pretrained_encoder

LEADS = [
    "task=lead_conversion_sequence",
    "model=sequence_fusion",
    "+data.source.lead_events=true",
    "data.source.n_opportunities=600",
    "data.source.n_companies=120",
    "data.source.n_reps=6",
    "task.sequence.max_len=12",
    "model.net.d_model=16",
    "model.net.n_layers=1",
]


def test_pretrain_publishes_a_lead_encoder_that_fine_tunes_load(tmp_path, capsys):
    assert cli_main(["pretrain", "--epochs", "2", "--name", "leads_enc", *LEADS, f"paths.root_dir={tmp_path}"]) == 0
    assert "published leads_enc v1" in capsys.readouterr().out
    version = tmp_path / "models" / "leads_enc" / "1"
    lineage = json.loads((version / "lineage.json").read_text())
    assert (
        lineage["entity"] == "lead_id"
        and lineage["histories"] > 10
        and lineage["source_task"] == "lead_conversion_sequence"
    )
    losses = json.loads((version / "metrics.json").read_text())["contrastive_loss_per_epoch"]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    vocabulary = SequenceVocabulary.load(version / "sequence_vocab.json")
    assert max(vocabulary.known["event_type"]) >= 6  # lead events are in the pretrained vocabulary
    state, _, found = load_pretrained_encoder(tmp_path / "models", "leads_enc@1", vocabulary)
    assert state and found["name"] == "leads_enc"


def test_a_task_without_sequences_is_refused_by_name(tmp_path, capsys):
    assert cli_main(["pretrain", "task=lead_conversion", f"paths.root_dir={tmp_path}"]) == 2
    assert "task=lead_conversion has no sequence inputs" in capsys.readouterr().out
    assert not (tmp_path / "models").exists()
