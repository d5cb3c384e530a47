"""Any user table (CSV / Parquet + a target column) as a tabular datamodule: `data=table`.

Column kinds come from `TableSource` (numeric, categorical, datetime, free text, id) and are reported in the
log and in the run directory (`column_types.json`, via `column_types`). Each kind becomes FeatureSpec inputs
the serving graph can take:
  numeric      -> a numeric feature; NaN allowed and replaced by the training median (`impute_missing`),
                  log1p when the column is non-negative and heavy-tailed
  categorical  -> a categorical feature (missing -> the category "__missing__")
  datetime     -> `<col>__days` (days since 1970, numeric) and `<col>__month` (categorical)
  text         -> `<col>__chars` and `<col>__words` (lengths; the words themselves may be PII and are not kept)
  id           -> never a feature
The target's kind decides the task: two distinct values -> binary (the larger / later-sorted value is 1),
numbers -> regression; anything else is refused with a message. The split is seeded and stratified
(binary), or by time when `time_col` is given (earliest rows train, latest test).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from fulqrun_ml.data.sources import SourceError
from fulqrun_ml.data.user_tables import ColumnKind, TableSource, UserTable
from fulqrun_ml.datamodules.tabular import SPLITS, TabularDataModuleBase, dataset_hash
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fulqrun_ml.features.target import TargetScaling

log = logging.getLogger(__name__)
MISSING_CATEGORY = "__missing__"
HEAVY_TAIL_SKEW = 2.0  # a non-negative column this skewed is learnt on log1p


class UserTableDataModule(TabularDataModuleBase):
    def __init__(
        self,
        path: str,
        target: str,
        time_col: str | None = None,
        id_col: str | None = None,
        seed: int = 0,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        max_categories: int = 50,
        task_name: str = "table",
    ) -> None:
        super().__init__(batch_size)
        if task_name != "table":
            raise SourceError(
                f"data=table trains under task=table (binary or regression by the target), not task={task_name}: "
                "add task=table to the command"
            )
        self.source = TableSource(path, target, time_col=time_col, id_col=id_col, max_categories=max_categories)
        self.seed = seed
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.column_types: list[dict] | None = None
        self.scoring_file = None

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        table = self.source.load()
        self.column_types = [
            {"column": c.column, "kind": str(c.kind), "dtype": c.dtype, "n_missing": c.n_missing,
             "n_unique": c.n_unique, "why": c.why}
            for c in table.columns
        ]  # fmt: skip
        for c in self.column_types:
            log.info("column %-24s %-11s (%s)", c["column"], c["kind"], c["why"])
        frame = table.frame[table.frame[table.target].notna()].reset_index(drop=True)
        self.target_kind, labels = target_labels(table, frame[table.target])
        features, spec = table_features(table, frame)
        frame = pd.concat([features, pd.DataFrame({"label": labels})], axis=1)
        if table.id_col is not None:
            frame.insert(0, table.id_col, table.frame.loc[table.frame[table.target].notna(), table.id_col].to_numpy())
        if table.time_col is not None:
            frame["as_of"] = table.frame.loc[table.frame[table.target].notna(), table.time_col].to_numpy()
        frame["split"] = self._split(frame, table)
        self.frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
        self.spec = spec.fit(self.frames["train"])
        if self.target_kind == "regression":
            self.target_scaling = TargetScaling.fit(self.frames["train"]["label"], log1p=False, name=table.target)
        self.data_hash = _file_hash(self.source.path, dataset_hash(frame))
        self.sizes = {"rows": len(table.frame), "rows_with_target": len(frame)} | {
            f"{s}_rows": len(self.frames[s]) for s in SPLITS
        }
        log.info("user table %s: %s target, %s", self.source.path.name, self.target_kind, self.sizes)
        self._build_datasets()

    def _split(self, frame: pd.DataFrame, table: UserTable) -> np.ndarray:
        n = len(frame)
        n_test, n_val = max(1, round(n * self.test_fraction)), max(1, round(n * self.val_fraction))
        if n - n_test - n_val < 2:
            raise SourceError(
                f"{n} rows with a target are too few for val={self.val_fraction}, test={self.test_fraction}"
            )
        split = np.full(n, "train", dtype=object)
        if table.time_col is not None:
            order = np.argsort(frame["as_of"].to_numpy(), kind="stable")
            split[order[n - n_test - n_val : n - n_test]] = "val"
            split[order[n - n_test :]] = "test"
            return split
        stratify = frame["label"] if self.target_kind == "binary" else None
        rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=self.seed, stratify=stratify)
        _, val = train_test_split(
            rest,
            test_size=n_val,
            random_state=self.seed,
            stratify=stratify.iloc[rest] if stratify is not None else None,
        )
        split[val], split[test] = "val", "test"
        return split


def target_labels(table: UserTable, values: pd.Series) -> tuple[str, np.ndarray]:
    """('binary', 0/1 labels) or ('regression', floats); other targets are refused naming the column."""
    kind = table.target_kind
    if kind == "binary":
        classes = sorted(values.unique(), key=str)
        return "binary", (values.to_numpy() == classes[1]).astype(np.float32)
    if kind == "regression":
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(numbers).all():
            raise SourceError(f"target '{table.target}' holds values that are not finite numbers")
        return "regression", numbers
    raise SourceError(
        f"target '{table.target}' has {values.nunique()} distinct non-numeric values: only binary and numeric "
        "(regression) targets are supported"
    )


def table_features(table: UserTable, frame: pd.DataFrame) -> tuple[pd.DataFrame, FeatureSpec]:
    """Model-ready columns derived from each feature column by its kind, and the FeatureSpec declaring them."""
    columns: dict[str, np.ndarray] = {}
    numeric: list[NumericFeature] = []
    categorical: list[CategoricalFeature] = []
    for name, kind in table.feature_columns.items():
        values = frame[name]
        if kind is ColumnKind.NUMERIC:
            x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
            present = x[np.isfinite(x)]
            if present.size == 0:
                continue  # an empty column carries nothing
            log1p = bool(present.min() >= 0 and pd.Series(present).skew() > HEAVY_TAIL_SKEW)
            columns[name] = np.where(np.isinf(x), np.nan, x)
            numeric.append(NumericFeature(name, f"user column {name}", log1p=log1p, impute_missing=True))
        elif kind is ColumnKind.CATEGORICAL:
            columns[name] = values.astype(object).where(values.notna(), MISSING_CATEGORY).astype(str).to_numpy()
            categorical.append(CategoricalFeature(name, f"user column {name}"))
        elif kind is ColumnKind.DATETIME:
            times = pd.to_datetime(values, utc=True)
            columns[f"{name}__days"] = (times - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() / 86400.0
            columns[f"{name}__month"] = times.dt.month.astype("Int64").astype(str).replace("<NA>", MISSING_CATEGORY)
            numeric.append(NumericFeature(f"{name}__days", f"{name}: days since 1970", impute_missing=True))
            categorical.append(CategoricalFeature(f"{name}__month", f"{name}: calendar month"))
        elif kind is ColumnKind.TEXT:
            text = values.fillna("").astype(str)
            columns[f"{name}__chars"] = text.str.len().to_numpy(dtype=np.float64)
            columns[f"{name}__words"] = text.str.split().str.len().to_numpy(dtype=np.float64)
            numeric.append(NumericFeature(f"{name}__chars", f"{name}: length in characters", log1p=True))
            numeric.append(NumericFeature(f"{name}__words", f"{name}: length in words", log1p=True))
    if not columns:
        raise SourceError(f"no usable feature columns besides target '{table.target}'")
    if not numeric or not categorical:
        # Models take both a continuous and a categorical block; a constant stand-in keeps shapes valid.
        columns.setdefault("__bias__", np.zeros(len(frame)))
        columns.setdefault("__all__", np.full(len(frame), "all", dtype=object))
        numeric = numeric or [NumericFeature("__bias__", "constant (the table has no numeric column)")]
        categorical = categorical or [CategoricalFeature("__all__", "constant (the table has no categorical column)")]
    features = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    return features, FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))


def _file_hash(path: Path, content_hash: str) -> str:
    """The snapshot-set hash, salted with the file name so two files with equal rows stay distinguishable."""
    return hashlib.sha256(f"{path.name}:{content_hash}".encode()).hexdigest()[:16]
