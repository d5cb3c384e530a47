"""The shared trunk (models/sequence_trunk.py): the deal model and the event-table model are one architecture.

An `EventFusion` whose token fields are the deal model's (event_type, channel) and which has no value field is the
deal `SequenceFusion`: loaded with its weights (renamed), it gives the same logits on the same touches, with or
without padding, so a fix to the trunk reaches both."""

from __future__ import annotations

import torch

from fulqrun_ml.models.event_fusion import EventFusion
from fulqrun_ml.models.sequence_fusion import SequenceFusion
from fulqrun_ml.models.sequence_trunk import GatedFusion, SequenceTrunk

SHAPE = {"hidden_dims": (16, 8), "max_len": 12, "d_model": 8, "n_heads": 2, "n_layers": 2}


def _touches(n: int = 16, length: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    events = torch.randint(0, length + 1, (n,), generator=g)
    events[0] = 0  # a deal without touches: [CLS] alone
    real = torch.arange(length)[None, :] >= (length - events)[:, None]
    return {
        "continuous": torch.randn(n, 4, generator=g),
        "categorical": torch.randint(0, 3, (n, 2), generator=g),
        "event_type": torch.where(real, torch.randint(1, 7, (n, length), generator=g), 0),
        "channel": torch.where(real, torch.randint(1, 6, (n, length), generator=g), 0),
        "delta_days": torch.where(real, torch.rand(n, length, generator=g) * 9, 0.0),
        "age_days": torch.where(real, torch.rand(n, length, generator=g) * 60, 0.0),
        "real": real,
    }


def test_the_event_model_is_the_deal_model_on_deal_touches():
    torch.manual_seed(0)
    deal = SequenceFusion(4, [3, 3], **SHAPE).eval()
    event = EventFusion(4, [3, 3], {"event_type": 7, "channel": 6}, [], **SHAPE).eval()
    assert isinstance(deal.sequence, SequenceTrunk) and isinstance(event.sequence, SequenceTrunk)
    assert isinstance(deal, GatedFusion) and isinstance(event, GatedFusion)
    rename = {"sequence.event_type.": "sequence.tokens.event_type.", "sequence.channel.": "sequence.tokens.channel."}
    rename["sequence.time."] = "sequence.values."
    state = {}
    for key, value in deal.state_dict().items():
        for old, new in rename.items():
            key = key.replace(old, new) if key.startswith(old) else key
        state[key] = value
    event.load_state_dict(state)  # strict: the same parameters, one for one
    x = _touches()
    with torch.no_grad():
        expected = deal(**{k: v for k, v in x.items() if k != "real"})
        # Event tables mark padding by age -1 instead of token 0.
        got = event(
            continuous=x["continuous"],
            categorical=x["categorical"],
            event_type=x["event_type"],
            channel=x["channel"],
            delta_days=x["delta_days"],
            age_days=torch.where(x["real"], x["age_days"], -1.0),
        )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert expected.std() > 0.01  # the rows differ: the check compares real outputs, not a constant
