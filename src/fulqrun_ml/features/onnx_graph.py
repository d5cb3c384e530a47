"""Compile a fitted FeatureSpec into an ONNX preprocessing graph: raw columns in, model tensors out.

Inputs: one per feature column, shape [N, 1]: float32 for numeric features, string for categorical ones.
Outputs: `continuous` float32 [N, n_numeric] and `categorical` int64 [N, n_categorical], exactly what
`FittedFeatureSpec.encode` produces, so a model graph can be appended with `onnx.compose.merge_models`.

Categoricals use `ai.onnx.ml.LabelEncoder` (vocabulary -> 1..K, anything else -> 0 = unknown), so no
Python runs between the client's raw record and the network, on CPU or on a GPU host.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fulqrun_ml.features.spec import UNKNOWN_INDEX, FittedFeatureSpec

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
BATCH = "batch"


def build_preprocessing_graph(spec: FittedFeatureSpec, opset: int, ir_version: int) -> onnx.ModelProto:
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.array([1.0], dtype=np.float32), "pre/one")]
    inputs: list[onnx.ValueInfoProto] = []

    numeric_outs = []
    for feat in spec.spec.numeric:
        inputs.append(helper.make_tensor_value_info(feat.name, TensorProto.FLOAT, [BATCH, 1]))
        x = feat.name
        if feat.name in spec.fill_values:  # NaN -> training median, exactly like FittedFeatureSpec.encode
            fill = numpy_helper.from_array(np.array([spec.fill_values[feat.name]], np.float32), f"pre/{x}/fill")
            inits.append(fill)
            nodes.append(helper.make_node("IsNaN", [x], [f"pre/{x}/isnan"]))
            nodes.append(helper.make_node("Where", [f"pre/{x}/isnan", f"pre/{x}/fill", x], [f"pre/{x}/filled"]))
            x = f"pre/{x}/filled"
        if feat.log1p:
            nodes.append(helper.make_node("Add", [x, "pre/one"], [f"pre/{x}/plus1"]))
            nodes.append(helper.make_node("Log", [f"pre/{x}/plus1"], [f"pre/{x}/log1p"]))
            x = f"pre/{x}/log1p"
        inits.append(numpy_helper.from_array(np.array([spec.means[feat.name]], np.float32), f"pre/{feat.name}/mean"))
        inits.append(numpy_helper.from_array(np.array([spec.stds[feat.name]], np.float32), f"pre/{feat.name}/std"))
        nodes.append(helper.make_node("Sub", [x, f"pre/{feat.name}/mean"], [f"pre/{feat.name}/centered"]))
        nodes.append(
            helper.make_node("Div", [f"pre/{feat.name}/centered", f"pre/{feat.name}/std"], [f"pre/{feat.name}/scaled"])
        )
        numeric_outs.append(f"pre/{feat.name}/scaled")

    categorical_outs = []
    for feat in spec.spec.categorical:
        inputs.append(helper.make_tensor_value_info(feat.name, TensorProto.STRING, [BATCH, 1]))
        vocab = spec.vocabularies[feat.name]
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [feat.name],
                [f"pre/{feat.name}/index"],
                domain=ML_DOMAIN,
                keys_strings=vocab,
                values_int64s=list(range(1, len(vocab) + 1)),
                default_int64=UNKNOWN_INDEX,
            )
        )
        categorical_outs.append(f"pre/{feat.name}/index")

    nodes.append(helper.make_node("Concat", numeric_outs, ["continuous"], axis=1))
    nodes.append(helper.make_node("Concat", categorical_outs, ["categorical"], axis=1))
    outputs = [
        helper.make_tensor_value_info("continuous", TensorProto.FLOAT, [BATCH, len(numeric_outs)]),
        helper.make_tensor_value_info("categorical", TensorProto.INT64, [BATCH, len(categorical_outs)]),
    ]
    graph = helper.make_graph(nodes, "fulqrun_preprocessing", inputs, outputs, initializer=inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        producer_name="fulqrun-ml",
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model
