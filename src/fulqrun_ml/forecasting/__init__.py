"""Revenue forecasting: windows over booked-revenue series, a quantile forecaster trained with Lightning,
conformal intervals, local baselines, a rolling-origin backtest, ONNX export and the forecast leaderboard.

One package for the whole task family (data module, LightningModule, evaluation, runner, exporter), since
none of it is shared with the tabular deal-win path; the network itself is a plain module in
`fulqrun_ml.models.forecaster`.
"""
