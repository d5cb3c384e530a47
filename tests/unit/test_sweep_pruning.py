"""The pruning callback reports validation AUC per epoch and stops a trial Optuna decides to prune."""

import optuna

from fulqrun_ml.training.sweep import OptunaPruning, format_value, suggest
from fulqrun_ml.training.train import train


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(compose_train, tmp_path):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.01))

    def objective(trial):
        callback = OptunaPruning(trial, "val/auc", "maximize")
        train(
            compose_train(tmp_path, "logger=none", "trainer.max_epochs=4", "trainer.enable_progress_bar=false"),
            extra_callbacks=[callback],
        )
        return callback.best

    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported epoch 0, then stopped
    assert 0.5 < trial.intermediate_values[0] <= 1.0


def test_search_space_values_become_hydra_overrides():
    trial = optuna.create_study().ask()
    assert suggest(trial, "model", {"type": "categorical", "choices": ["mlp", "tabm"]}) in ("mlp", "tabm")
    assert 1e-4 <= suggest(trial, "lr", {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}) <= 1e-2
    assert format_value([64, 32]) == "[64,32]"
