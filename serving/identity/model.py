"""Triton Python-backend identity model: answers each request with one of its own input tensors.

Why it exists: the load harness (`fulqrun_ml.benchmarks.serving`) serves it next to a real model, in the same
server, with the same inputs, batching and instance settings, so the difference between the two is
exactly our validation + onnxruntime work and the rest is Triton's own overhead floor (HTTP/gRPC,
JSON/protobuf, dynamic batching, the Python stub's shared-memory hop).

The config names the echoed input in the `echo_input` parameter; the output keeps the served model's
output name and shape ([batch, 1] FP32): the echoed tensor's first column (a column input is that column; a
packed [batch, k] input or the one-tensor floor's [batch, k] gives its first), so responses look the same on
the wire. No validation, no copy beyond what the backend itself does.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.output_name = config["output"][0]["name"]
        self.echo_input = config["parameters"]["echo_input"]["string_value"]

    def execute(self, requests):
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, self.echo_input)
            if tensor is None:
                error = pb_utils.TritonError(f"field '{self.echo_input}': missing input")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out = pb_utils.Tensor(self.output_name, tensor.as_numpy()[:, :1])
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
