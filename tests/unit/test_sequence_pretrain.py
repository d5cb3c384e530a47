"""CoLES pretraining (sequence/pretrain.py): point-in-time histories, slices, the contrastive loss learns, the
published version is complete with lineage, and a run's encoder loads it by token value (or refuses clearly)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.models.sequence_fusion import ActivitySequenceEncoder
from fulqrun_ml.sequence import pretrain as pt
from fulqrun_ml.sequence.events import SequenceVocabulary

MAX_LEN = 16


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=400, n_companies=100, days=300, seed=3, engagement="dynamic")


@pytest.fixture(scope="module")
def histories(crm):
    cutoff = crm.tables.extracted_at - pd.Timedelta(days=100)
    raw = pt.pretraining_histories(crm.tables, cutoff, MAX_LEN, min_events=4)
    vocabulary = SequenceVocabulary.fit(raw, MAX_LEN)
    return cutoff, raw, vocabulary, vocabulary.transform(raw)


def _config(vocabulary: SequenceVocabulary, epochs: int) -> pt.PretrainConfig:
    encoder = {**vocabulary.sizes, "max_len": MAX_LEN, "d_model": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0}
    return pt.PretrainConfig(encoder=encoder, epochs=epochs, batch_size=64, lr=3e-3)


def test_histories_stop_at_the_cutoff(crm, histories):
    _, raw, _, _ = histories
    real = np.arange(MAX_LEN)[None, :] >= (MAX_LEN - raw["length"])[:, None]
    assert (raw["age_days"][real] >= 0).all()  # nothing after the cutoff
    assert (raw["length"] >= 4).all()
    later = pt.pretraining_histories(crm.tables, crm.tables.extracted_at, MAX_LEN, min_events=4)
    assert len(later["length"]) > len(raw["length"])  # the cutoff really removes deals and touches


def test_slices_are_contiguous_and_end_now(histories):
    _, _, _, arrays = histories
    sliced = pt.random_slices(arrays, np.random.default_rng(0), min_slice=3)
    length = (sliced["event_type"] != 0).sum(1)
    assert (length >= 3).all() and (length <= (arrays["event_type"] != 0).sum(1)).all()
    assert np.allclose(sliced["age_days"][:, -1], 0.0)
    first = MAX_LEN - length
    assert np.allclose(sliced["delta_days"][np.arange(len(length)), first], 0.0)


def test_contrastive_pretraining_learns_to_match_slices(histories):
    """After pretraining, two slices of one deal are nearer than slices of two deals, far beyond chance."""
    _, _, vocabulary, arrays = histories
    encoder, losses = pt.pretrain_encoder(arrays, _config(vocabulary, epochs=6))
    assert losses[-1] < losses[0] - 0.3, losses  # chance level is log(2 * 64 - 1) = 4.8
    rng = np.random.default_rng(1)
    fields = [f for f in ("event_type", "channel", "direction", "delta_days", "age_days") if f in arrays]
    with torch.no_grad():
        a, b = (
            torch.nn.functional.normalize(
                encoder(**{f: torch.from_numpy(v) for f, v in pt.random_slices(arrays, rng, 3).items() if f in fields}),
                dim=1,
            )
            for _ in range(2)
        )
    similarity = (a @ b.T).numpy()
    top1 = (similarity.argmax(1) == np.arange(len(similarity))).mean()
    assert top1 > 5.0 / len(similarity), top1


def test_nt_xent_prefers_matching_pairs():
    a = torch.eye(4)
    assert pt.nt_xent(a, a.clone(), 0.1) < pt.nt_xent(a, a.roll(1, 0), 0.1)


def test_published_encoder_loads_by_token_value(tmp_path, histories):
    _, _, vocabulary, arrays = histories
    config = _config(vocabulary, epochs=1)
    encoder, losses = pt.pretrain_encoder(arrays, config)
    version = pt.publish_pretrained_encoder(
        tmp_path, "coles", encoder, config, vocabulary, losses, {"data_hash": pt.data_hash(arrays)}
    )
    assert {"encoder_state.pt", "encoder_config.json", "sequence_vocab.json", "lineage.json"} <= {
        p.name for p in version.path.iterdir()
    }
    assert json.loads((version.path / "lineage.json").read_text())["data_hash"] == pt.data_hash(arrays)
    # A run whose vocabulary lists the event types in another order (one new value) gets rows by value.
    known = dict(vocabulary.known)
    known["event_type"] = ("zz_new", *reversed(known["event_type"]))
    target = SequenceVocabulary(known=known, max_len=MAX_LEN)
    state, _, lineage = pt.load_pretrained_encoder(tmp_path, "coles@latest", target)
    run_encoder = ActivitySequenceEncoder(**{**config.encoder, **target.sizes})
    fresh_new_row = run_encoder.event_type.weight[2].detach().clone()
    pt.apply_pretrained(run_encoder, state, freeze=True)
    source = encoder.event_type.weight.detach()
    for j, value in enumerate(target.known["event_type"]):
        if value in vocabulary.known["event_type"]:
            i = vocabulary.known["event_type"].index(value)
            assert torch.equal(run_encoder.event_type.weight[j + 2], source[i + 2])
    assert torch.equal(run_encoder.event_type.weight[2], fresh_new_row)  # the unseen value keeps its init
    assert not any(p.requires_grad for p in run_encoder.parameters())
    assert lineage["version"] == version.version


def test_bad_references_are_named(tmp_path, histories):
    _, _, vocabulary, _ = histories
    with pytest.raises(pt.PretrainError, match="expected <name>@<version>"):
        pt.load_pretrained_encoder(tmp_path, "coles", vocabulary)
    with pytest.raises(pt.PretrainError, match="init_from=nothing@latest"):
        pt.load_pretrained_encoder(tmp_path, "nothing@latest", vocabulary)


def test_fused_pipeline_starts_from_the_pretrained_encoder(tmp_path, histories):
    """`task.sequence.init_from` puts the published encoder into the fused arm; the tabular-only arm has none."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from fulqrun_ml.pipelines.sequence_fusion import SequenceFusionPipeline

    _, _, vocabulary, arrays = histories
    config = _config(vocabulary, epochs=1)
    encoder, losses = pt.pretrain_encoder(arrays, config)
    pt.publish_pretrained_encoder(tmp_path, "coles", encoder, config, vocabulary, losses, {"data_hash": "x"})
    net = {"_target_": "fulqrun_ml.models.sequence_fusion.SequenceFusion", "hidden_dims": [8], "d_model": 16}
    net.update(n_layers=1, n_heads=2, ffn_factor=2.0, sequence_dropout=0.0)
    cfg = OmegaConf.create(
        {
            "seed": 0,
            "model": {"net": net},
            "paths": {"models_dir": str(tmp_path)},
            "task": {"sequence": {"ablation": True, "init_from": "coles@latest", "freeze": False}},
        }
    )
    spec = SimpleNamespace(spec=SimpleNamespace(numeric=["a"]), cardinalities=[3])
    datamodule = SimpleNamespace(vocabulary=vocabulary, max_len=MAX_LEN, spec=spec)
    pipeline = SequenceFusionPipeline()
    fused, ablation = (arm.build()[0] for arm in pipeline.arms(cfg, datamodule, "binary"))
    for name, value in encoder.state_dict().items():
        assert torch.equal(fused.sequence.state_dict()[name], value), name
    assert ablation.sequence is None
    assert pipeline.pretrained_encoder["name"] == "coles"
