"""Deal win from features + activity sequences: point-in-time sequence arrays and their vocabularies
(`events`), the datamodule that aligns them with the deal-win snapshots (`datamodule`), the Lightning task
(`task`), the `fulqrun-ml train task=deal_win_sequence` runner (`runner`) and the ONNX export (`export`).

The network itself is `fulqrun_ml.models.sequence_fusion.SequenceFusion`, a plain nn.Module.
"""
