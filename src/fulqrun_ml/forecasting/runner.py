"""`fulqrun-ml train task=revenue_forecast`: train the quantile forecaster, calibrate, backtest, write a run dir.

Reached through `training.train.train`, which dispatches to `cfg.task.runner`. The run directory holds:
  checkpoints/          Lightning checkpoints (best by the task's monitor, last)
  net_state.pt          the best backbone's weights (plain state_dict; all members of an ensemble)
  net_config.json       the backbone's full constructor config (with lookback, horizon, quantiles, sizes)
  conformal.json        CQR offsets fitted per level on the calibration period ([H, Q] each) and the
                        per-series table the graph applies; quantile levels, interval
  series_index.json     level, frequency and the series groups in embedding order (index = position + 1)
  backtest.npz          the test windows and the calibrated PyTorch forecasts (what export checks parity on)
  metrics.json          rolling-origin backtest per level: model (calibrated), model_raw, seasonal naive,
                        SES, Holt-Winters; WAPE, MASE, pinball, coverage; and the issue's target check
  run_info.json         lineage (config, net config, data hash and window, git commit, W&B run id and
                        dataset/model artifacts, sizes, timings); written last, so its presence marks a finished run
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.backtest import backtest_report, local_forecasts
from fulqrun_ml.forecasting.baselines import baseline_forecasters
from fulqrun_ml.forecasting.build import build_forecaster
from fulqrun_ml.forecasting.conformal import apply_offsets, fit_cqr_offsets, widest
from fulqrun_ml.forecasting.datamodule import RevenueForecastDataModule
from fulqrun_ml.forecasting.noise_floor import compound_poisson_wape_floor
from fulqrun_ml.forecasting.task import predict_quantiles
from fulqrun_ml.models.forecaster import ForecastEnsemble
from fulqrun_ml.project import git_commit
from fulqrun_ml.training.wandb_logging import log_artifacts

log = logging.getLogger(__name__)
WAPE_REDUCTION_TARGET = 0.35
COVERAGE_TARGET = (0.77, 0.83)


def build_callbacks(cfg: DictConfig, extra: list[pl.Callback] | None, member: int = 0) -> list[pl.Callback]:
    """The configured callbacks, watching the task's own metric: the shared callback config names the
    deal-win metric, and which metric to watch is the task's decision, not the callback file's. Ensemble
    members after the first checkpoint into their own subdirectory."""
    callbacks = []
    for c in (cfg.get("callbacks") or {}).values():
        if "monitor" in c:
            c = OmegaConf.merge(c, {"monitor": cfg.task.monitor, "mode": "min"})
        if member and "dirpath" in c:
            c = OmegaConf.merge(c, {"dirpath": f"{c.dirpath}/member_{member}"})
        callbacks.append(instantiate(c))
    return callbacks + list(extra or [])


def scale_of(history: np.ndarray, min_scale: float) -> np.ndarray:
    """NumPy twin of models.forecaster.window_scale, [N]."""
    return np.maximum(np.abs(history.astype(np.float64)).mean(axis=1), min_scale)


def target_check(metrics: dict[str, dict[str, float]], interval: float) -> dict[str, Any]:
    """The issue's acceptance numbers: WAPE >= 35% below seasonal naive; interval coverage 77-83%."""
    reduction = 1.0 - metrics["model"]["wape"] / metrics["seasonal_naive"]["wape"]
    low, high = COVERAGE_TARGET
    return {
        "wape_reduction_vs_seasonal_naive": reduction,
        "wape_target_met": bool(reduction >= WAPE_REDUCTION_TARGET),
        f"coverage_{round(interval * 100)}": metrics["model"]["coverage"],
        "coverage_target_met": bool(low <= metrics["model"]["coverage"] <= high),
    }


def run(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Train, calibrate and backtest one forecaster; returns the run summary (also in run_info.json)."""
    t_start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    quantiles = [float(q) for q in cfg.task.quantiles]
    interval = float(cfg.task.interval)

    datamodule: RevenueForecastDataModule = instantiate(cfg.data)
    datamodule.setup("fit")
    assert datamodule.panel is not None
    t_data = time.perf_counter()
    net_config = {
        **OmegaConf.to_container(cfg.model.net, resolve=True),
        "lookback": datamodule.lookback,
        "horizon": datamodule.horizon,
        "quantiles": quantiles,
        "n_calendar": datamodule.n_calendar,
        "n_series": datamodule.n_series,
    }
    try:
        build_forecaster({**net_config, "ensemble": 1})
    except Exception as error:  # Hydra wraps the constructor's TypeError; say which choice is wrong
        raise FulqrunMLError(
            f"model={cfg.model.name} cannot be built as a forecaster (lookback/horizon/quantiles inputs); "
            "choose a forecasting model, e.g. model=nbeats"
        ) from error
    n_members = int(cfg.model.get("ensemble", 1))
    net_config["ensemble"] = n_members
    min_scale = float(net_config.get("min_scale", 1.0))
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] if cfg.get("logger") else []
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        wandb_run = next((lg.experiment for lg in loggers if isinstance(lg, WandbLogger)), None)
        for lg in loggers:
            lg.log_hyperparams({"config": config, "data_hash": datamodule.data_hash, "sizes": datamodule.sizes})
        members, epochs, best = [], [], ""
        for i in range(n_members):
            # Member 0 is the configured run (its checkpoints and logger); the others differ only by seed.
            pl.seed_everything(cfg.seed + i, workers=True)
            member = build_forecaster({**net_config, "ensemble": 1})
            task = instantiate(cfg.task.module, net=member, quantiles=quantiles, min_scale=min_scale)
            trainer: pl.Trainer = instantiate(
                cfg.trainer,
                logger=(loggers or False) if i == 0 else False,
                callbacks=build_callbacks(cfg, extra_callbacks, member=i),
            )
            trainer.fit(task, datamodule=datamodule)
            ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            trainer.test(task, datamodule=datamodule, ckpt_path=ckpt or None, weights_only=False, verbose=False)
            members.append(task.net.eval())
            epochs.append(trainer.current_epoch)
            best = best or ckpt
        t_fit = time.perf_counter()
        net = members[0] if n_members == 1 else ForecastEnsemble(members).eval()

        cal = datamodule.windows["calibration"]
        cal_raw = predict_quantiles(net, cal).astype(np.float64)
        cal_scale = scale_of(cal["history"], min_scale)
        cal_level = datamodule.series_level[cal["series"] - 1]
        per_horizon = bool(cfg.task.get("conformal_per_horizon", False))
        offsets_by_level = {
            lv: fit_cqr_offsets(
                cal["target"][cal_level == lv].astype(np.float64),
                cal_raw[cal_level == lv],
                cal_scale[cal_level == lv],
                quantiles,
                per_horizon=per_horizon,
            )
            for lv in datamodule.levels
        }
        # One table per series row (index 0: a series unseen in training gets the widest level's offsets).
        series_offsets = np.stack(
            [widest(np.stack(list(offsets_by_level.values())), quantiles)]
            + [offsets_by_level[lv] for lv in datamodule.series_level]
        )
        test = datamodule.windows["test"]
        test_scale = scale_of(test["history"], min_scale)
        raw = predict_quantiles(net, test).astype(np.float64)
        forecasts = {
            "model": apply_offsets(raw, series_offsets[test["series"]], test_scale),
            "model_raw": apply_offsets(raw, np.zeros_like(series_offsets[0]), test_scale),
        }
        t_baselines = time.perf_counter()
        baseline_seconds = {}
        for name, forecaster in baseline_forecasters(datamodule.season).items():
            t0 = time.perf_counter()
            forecasts[name] = local_forecasts(
                datamodule.panel, datamodule.origins["test"], datamodule.horizon, quantiles, forecaster
            )
            baseline_seconds[name] = round(time.perf_counter() - t0, 3)
        t_backtest = time.perf_counter()
        test_level = datamodule.series_level[test["series"] - 1]
        metrics: dict[str, Any] = {}
        for lv in datamodule.levels:
            metrics[lv] = backtest_report(
                datamodule.panel,
                test,
                forecasts,
                quantiles,
                datamodule.season,
                datamodule.test_start,
                interval,
                rows=test_level == lv,
            )
            metrics[lv]["target_check"] = target_check(metrics[lv], interval)
            test_mean = datamodule.panel.values[datamodule.series_level == lv, datamodule.test_start :].mean(axis=1)
            floor = compound_poisson_wape_floor(test_mean, datamodule.deal_values, seed=cfg.seed)
            metrics[lv]["target_check"]["noise_floor_wape"] = floor
            metrics[lv]["target_check"]["max_reachable_wape_reduction"] = (
                1.0 - floor / metrics[lv]["seasonal_naive"]["wape"]
            )
        for lg in loggers:
            lg.log_metrics(
                {
                    f"backtest/{who}/{k}": v
                    for who, m in metrics.items()
                    for k, v in m.items()
                    if not isinstance(v, bool)
                }
            )

        run_id = next((lg.experiment.id for lg in loggers if hasattr(lg.experiment, "id")), None)
        summary = {
            "run_dir": str(out),
            "task": cfg.task.name,
            "model": cfg.model.name,
            "net_config": net_config,
            "config": config,
            "data_hash": datamodule.data_hash,
            "git_commit": git_commit(),
            "wandb_run_id": run_id,
            "best_checkpoint": best,
            "epochs": epochs[0],
            "member_epochs": epochs,
            "sizes": datamodule.sizes,
            "series": {"levels": datamodule.levels, "freq": datamodule.freq, "season": datamodule.season},
            "data_window": {s: datamodule.split_window(s) for s in datamodule.origins},
            "parameters": sum(p.numel() for p in net.parameters()),
        }
        torch.save(net.state_dict(), out / "net_state.pt")
        (out / "net_config.json").write_text(json.dumps(net_config, indent=2))
        conformal = {
            "method": "cqr",
            "quantiles": quantiles,
            "interval": interval,
            "per_horizon": per_horizon,
            "offsets_by_level": {lv: o.tolist() for lv, o in offsets_by_level.items()},
            "series_offsets": series_offsets.tolist(),  # [n_series + 1, H, Q]: what the graph applies
            "fitted_on": "calibration",
            "windows": {lv: int((cal_level == lv).sum()) for lv in datamodule.levels},
            "min_scale": min_scale,
        }
        (out / "conformal.json").write_text(json.dumps(conformal, indent=2))
        index = {"levels": datamodule.levels, "freq": datamodule.freq, "groups": datamodule.panel.groups}
        (out / "series_index.json").write_text(json.dumps(index, indent=2))
        np.savez_compressed(
            out / "backtest.npz",
            **{k: test[k] for k in ("history", "calendar", "series", "target", "origin")},
            forecast=forecasts["model"],
        )
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        summary["wandb_artifacts"] = None
        if wandb_run is not None:
            wandb_run.summary.update({f"target_check/{lv}": m["target_check"] for lv, m in metrics.items()})
            summary["wandb_artifacts"] = log_artifacts(wandb_run, out, summary, metrics)
        summary["seconds"] = {
            "data": round(t_data - t_start, 3),
            "fit": round(t_fit - t_data, 3),
            "baselines": round(t_backtest - t_baselines, 3),
            "baseline_fit_forecast": baseline_seconds,  # refitted at every origin, over all test windows
            "total": round(time.perf_counter() - t_start, 3),
        }
        (out / "run_info.json").write_text(json.dumps(summary, indent=2, default=str))
        for lv, m in metrics.items():
            log.info(
                "backtest %s: WAPE model=%.4f seasonal_naive=%.4f, coverage=%.3f",
                lv,
                m["model"]["wape"],
                m["seasonal_naive"]["wape"],
                m["model"]["coverage"],
            )
        return {**summary, "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()
