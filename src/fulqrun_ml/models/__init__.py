"""Backbones: plain nn.Modules (torch only) that turn a batch into outputs.

Every backbone is called with the batch as keywords, `net(**inputs)`, and its keyword names are the batch keys
and the exported graph's input names (`continuous`, `categorical`; the sequence fields; `history`, `calendar`,
`series`). Every backbone class also states what it is, so a pipeline can refuse a mismatched pair with a clear
message before any data is built, without inspecting constructor signatures:

- `FAMILY`: "tabular" (continuous + categorical -> [N, n_outputs]), "sequence" (tabular + event sequences) or
  "forecast" (window batches -> quantiles);
- `MULTI_OUTPUT`: whether it takes `n_outputs` (a survival task needs one hazard logit per time bin).

`configs/model/<name>.yaml` repeats the family as `family:`, which is how the leaderboard finds its backbones.
"""

from __future__ import annotations

import importlib

from fulqrun_ml.errors import FulqrunMLError

FAMILIES = ("tabular", "sequence", "forecast")


class BackboneDeclarationError(FulqrunMLError, TypeError):
    """A `model.net._target_` cannot be imported or its class does not declare FAMILY / MULTI_OUTPUT."""


def backbone_family(target: str) -> tuple[str, bool]:
    """(FAMILY, MULTI_OUTPUT) of the backbone class named by a dotted `_target_`, e.g.
    `fulqrun_ml.models.mlp.MLP` -> ("tabular", True)."""
    module_name, _, class_name = target.rpartition(".")
    if not module_name:
        raise BackboneDeclarationError(f"model.net._target_={target!r} is not a dotted path to a class")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise BackboneDeclarationError(
            f"model.net._target_={target!r}: cannot import {module_name!r} ({error})"
        ) from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise BackboneDeclarationError(f"model.net._target_={target!r}: {module_name!r} has no class {class_name!r}")
    family = getattr(cls, "FAMILY", None)
    multi_output = getattr(cls, "MULTI_OUTPUT", None)
    if family not in FAMILIES:
        raise BackboneDeclarationError(
            f"backbone {cls.__qualname__} ({target}) must declare FAMILY: ClassVar[str] as one of {FAMILIES}, "
            f"got {family!r}"
        )
    if not isinstance(multi_output, bool):
        raise BackboneDeclarationError(
            f"backbone {cls.__qualname__} ({target}) must declare MULTI_OUTPUT: ClassVar[bool] (does it take "
            f"n_outputs?), got {multi_output!r}"
        )
    return family, multi_output
