"""`fulqrun-ml models ...` as the lead wires it: models_main(argv) on a real registry directory."""

import json

from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.diff import diff
from fulqrun_ml.registry.store import publish_version


def publish(models_dir, auc, dropout, data_hash, output_dir):
    def write(tmp):
        (tmp / "model.onnx").write_bytes(b"x")
        metrics = {"model": {"auc": auc, "ece": 0.03, "n": 100}, "rep": {"auc": 0.7, "ece": 0.1, "n": 100}}
        (tmp / "metrics.json").write_text(json.dumps(metrics))
        config = {"model": {"net": {"dropout": dropout}}, "seed": 42, "paths": {"output_dir": output_dir}}
        (tmp / "lineage.json").write_text(json.dumps({"config": config, "data_hash": data_hash}))

    return publish_version(models_dir, "deal_win", write, {"task": "deal_win", "data_hash": data_hash})


def test_diff_reports_metric_config_and_lineage_changes(tmp_path):
    publish(tmp_path, 0.71, 0.3, "aaaa", "/runs/1")
    publish(tmp_path, 0.74, 0.1, "bbbb", "/runs/2")
    result = diff(tmp_path, "deal_win", 1, "latest")
    metrics = {c.key: c for c in result.metrics}
    assert set(metrics) == {"model.auc"} and abs(metrics["model.auc"].delta - 0.03) < 1e-9
    assert [(c.key, c.a, c.b) for c in result.config] == [("model.net.dropout", 0.3, 0.1)]  # paths.* ignored
    assert [(c.key, c.a, c.b) for c in result.lineage] == [("data_hash", "aaaa", "bbbb")]
    assert diff(tmp_path, "deal_win", 2, 2).identical


def test_models_main_list_show_promote_rollback_diff(tmp_path, capsys):
    publish(tmp_path, 0.71, 0.3, "aaaa", "/runs/1")
    publish(tmp_path, 0.74, 0.1, "bbbb", "/runs/2")
    base = ["--models-dir", str(tmp_path)]
    reloads = []

    def reload(change):
        reloads.append((change.alias, change.to_version))

    assert models_main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "deal_win" in out and "v2" in out

    assert models_main([*base, "promote", "deal_win", "1", "--actor", "ada"], on_change=reload) == 0
    assert models_main([*base, "promote", "deal_win", "2"], on_change=reload) == 0
    assert models_main([*base, "promote", "deal_win", "2"], on_change=reload) == 0  # no change, no reload
    out = capsys.readouterr().out
    assert "production v1 -> v2 by" in out and "already at v2; nothing changed" in out
    assert models_main([*base, "rollback", "deal_win", "--actor", "bob"], on_change=reload) == 0
    assert "rollback production v2 -> v1 by bob" in capsys.readouterr().out
    # what the CLI would rebuild / reload Triton with
    assert reloads == [("production", 1), ("production", 2), ("production", 1)]
    assert read_alias_state(tmp_path, "deal_win").production == 1

    assert models_main([*base, "list", "deal_win"]) == 0
    out = capsys.readouterr().out
    assert "production" in out and "0.7100" in out and "0.7400" in out

    assert models_main([*base, "show", "deal_win", "production"]) == 0
    out = capsys.readouterr().out
    assert "deal_win v1" in out and "rollback" in out and "bob" in out

    assert models_main([*base, "show", "deal_win", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 2 and shown["metrics"]["model"]["auc"] == 0.74 and shown["model_card"]

    assert models_main([*base, "show", "deal_win", "--card"]) == 0
    assert "Model card: deal_win v2" in capsys.readouterr().out

    assert models_main([*base, "diff", "deal_win", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "model.auc" in out and "+0.03" in out and "model.net.dropout" in out and "bbbb" in out


def test_models_main_errors_name_the_problem_and_return_2(tmp_path, capsys):
    publish(tmp_path, 0.71, 0.3, "aaaa", "/runs/1")
    base = ["--models-dir", str(tmp_path)]
    assert models_main([*base, "rollback", "deal_win"]) == 2
    assert "error: model 'deal_win' has no production version" in capsys.readouterr().err
    assert models_main([*base, "promote", "deal_win", "7"]) == 2
    assert "no version 7" in capsys.readouterr().err
    assert models_main([*base, "list", "churn"]) == 2
    assert models_main([*base, "promote", "deal_win", "1", "--alias", "staging"]) == 2  # argparse refuses
    assert "invalid choice: 'staging'" in capsys.readouterr().err
