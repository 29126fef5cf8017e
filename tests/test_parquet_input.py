"""Parquet files as input: read by the same SQL program, typed values cast to text first."""
import os

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config.schema import Config, apply_overrides
from pipelines.data.prepare import prepare
from pipelines.validate import validate
from test_bigquery_sql import CONFIGS, configs
from test_prepare import rows_of


def test_parquet_files_prepare_exactly_like_the_same_rows_in_csv(tmp_path):
    # (a hash split hashes the cells as text: a Parquet float 7.0 reads "7.0", a CSV cell "7")
    local, _ = configs(tmp_path, CONFIGS["user_time"])
    validate(local)
    csv_out = str(tmp_path / "from_csv")
    prepare(local, csv_out)
    from pyarrow import csv

    text = {"customer_id": pa.string(), "product_id": pa.string(), "segment": pa.string(),
            "region": pa.string(), "category": pa.string()}
    typed = {"timestamp": pa.int64(), "price": pa.float64(), "quantity": pa.int64()}
    for name in ("purchases", "products"):
        table = csv.read_csv(tmp_path / f"{name}.csv", convert_options=csv.ConvertOptions(
            column_types={**text, **typed}))
        pq.write_table(table, tmp_path / f"{name}.parquet")
    cfg = Config.from_dict(apply_overrides(local.to_dict(), [
        f"data.path={tmp_path / 'purchases.parquet'}",
        f"data.candidates.path={tmp_path / 'products.parquet'}"]))
    validate(cfg)
    out = str(tmp_path / "from_parquet")
    report = prepare(cfg, out)
    splits = [d for d in os.listdir(csv_out) if os.path.isdir(os.path.join(csv_out, d))]
    assert len(splits) == 6 and report["rows"] == 240
    for split in splits:  # "007" stays "007" (a string column), 10.5 stays 10.5
        assert rows_of(out, split) == rows_of(csv_out, split), split
    bad = Config.from_dict(apply_overrides(cfg.to_dict(), ["data.query_id=customer"]))
    import pytest

    from pipelines.config.schema import ConfigError

    with pytest.raises(ConfigError, match=r"data.query_id: column 'customer' is not in"):
        validate(bad)
