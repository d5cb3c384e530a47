"""The generated files of a next-best-action endpoint (`<name>_actions`), written into its Triton version directory.

Why generated, not copied: the backend needs what the registry version implies but does not hold as a file, and
must not import pandas or training code to derive it at load time. `TritonRepositoryBuilder.add` calls
`write_nba_companions` after the version's own files (model.onnx, feature_spec.json, propensity.json; decrypted
when encrypted at rest) are in place. The registry files stay byte-identical, so a signed version still verifies.
  encoder.onnx      the FeatureSpec's own preprocessing graph (the same one merged into model.onnx): raw columns
                    -> `continuous`, `categorical`, which the propensity models (support mask) read
  nba_serving.json  the action space (components and arms, reference first), support floor, interval z, open
                    stages and the categorical cardinalities
  nba_rank.py       the numpy ranking (serving/nba_rank.py), loaded by path by the backend
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import onnx

from fulqrun_ml.data.simulator_actions import COMPONENTS
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.features.onnx_graph import build_preprocessing_graph
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.serving import nba_rank

ENCODER_FILE, TABLE_FILE, RANK_FILE = "encoder.onnx", "nba_serving.json", "nba_rank.py"
PROPENSITY_FILE = "propensity.json"
# The one definition of the support floor and the interval z: recommend/learners.py and recommend/ranking.py import
# them from here (serving sits below recommend).
SUPPORT_FLOOR, Z95 = 0.05, 1.96


def is_effect_model(metadata: dict[str, Any]) -> bool:
    """A next-best-action effect model: its metadata names the (component, arm) of every output column."""
    return "effect_outputs" in metadata


def action_space(metadata: dict[str, Any]) -> dict[str, list[str]]:
    """The components and arms the version was trained on; refuses a version whose effect columns differ from the
    action space this code ranks (a version from another simulator world must not be ranked with wrong labels)."""
    expected = [[c, arm] for c, arms in COMPONENTS.items() for arm in arms[1:]]
    recorded = [list(o) for o in metadata["effect_outputs"]]
    if recorded != expected:
        raise ValueError(
            f"{metadata.get('name')} v{metadata.get('version')}: effect outputs {recorded[:3]}... differ from the "
            "action space (data/simulator_actions.COMPONENTS); re-export it with this code"
        )
    return {c: list(arms) for c, arms in COMPONENTS.items()}


def write_nba_companions(version_dir: Path, metadata: dict[str, Any]) -> None:
    """Write encoder.onnx, nba_serving.json and nba_rank.py next to the copied model.onnx / feature_spec.json."""
    version_dir = Path(version_dir)
    spec = FittedFeatureSpec.load(version_dir / "feature_spec.json")
    network = onnx.load(str(version_dir / "model.onnx"), load_external_data=False)
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    encoder = build_preprocessing_graph(spec, opset=opset, ir_version=network.ir_version)
    onnx.save(encoder, str(version_dir / ENCODER_FILE))
    table = {
        "components": action_space(metadata),
        "support_floor": SUPPORT_FLOOR,
        "z": Z95,
        "open_stages": list(OPEN_STAGES),
        "numeric": [f.name for f in spec.spec.numeric],
        "categorical": [f.name for f in spec.spec.categorical],
        "cardinalities": spec.cardinalities,
    }
    (version_dir / TABLE_FILE).write_text(json.dumps(table, indent=2))
    shutil.copy2(Path(nba_rank.__file__), version_dir / RANK_FILE)
