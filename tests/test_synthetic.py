"""The seeded synthetic B2B generator: determinism, file layout and data properties."""
import collections
import csv
import datetime
import os

import pytest

from pipelines.data.synthetic import BRANDS, NOUNS, generate

ARGS = dict(customers=50, products=40, purchases=2000, categories=5, dim=4)
UTC = datetime.timezone.utc
YEAR_START = datetime.datetime(2025, 1, 1, tzinfo=UTC).timestamp()
YEAR_END = datetime.datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def raw(path):
    with open(path, "rb") as handle:
        return handle.read()


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("syn") / "nested" / "dir")  # created by generate
    paths = generate(out, seed=5, **ARGS)
    purchases, products = rows_of(paths["purchases"]), rows_of(paths["products"])
    return {"out": out, "paths": paths, "purchases": purchases, "products": products}


def test_returns_the_two_paths_in_out_dir(data):
    assert data["paths"] == {"purchases": os.path.join(data["out"], "purchases.csv"),
                             "products": os.path.join(data["out"], "products.csv")}
    assert sorted(os.listdir(data["out"])) == ["products.csv", "purchases.csv"]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, data):
    again = generate(str(tmp_path / "again"), seed=5, **ARGS)
    other = generate(str(tmp_path / "other"), seed=6, **ARGS)
    for name in ("purchases", "products"):
        assert raw(again[name]) == raw(data["paths"][name])
        assert raw(other[name]) != raw(data["paths"][name])


def test_headers_are_exact(data):
    assert raw(data["paths"]["purchases"]).split(b"\r\n")[0] == (
        b"customer_id,segment,region,product_id,timestamp,quantity")
    assert raw(data["paths"]["products"]).split(b"\r\n")[0] == b"product_id,name,category,price"


def test_purchase_count_and_products_listed_once(data):
    purchases, products = data["purchases"][1:], data["products"][1:]
    assert len(purchases) == 2000
    ids = [p[0] for p in products]
    assert ids == [f"P{p:05d}" for p in range(40)]
    assert len(set(ids)) == len(ids)
    assert {p[3] for p in purchases} <= set(ids)
    kinds = {}
    for _, name, category, price in products:
        brand, noun = name.split(" ")
        assert brand in BRANDS and noun in NOUNS
        assert category in {f"cat_{c:02d}" for c in range(5)}
        assert float(price) > 0 and len(price.split(".")[1]) == 2
        kinds.setdefault(category, set()).add(noun)
    assert all(len(k) <= 2 for k in kinds.values())  # a category sells two kinds of goods


def test_every_row_is_well_formed(data):
    for customer, segment, region, product, stamp, quantity in data["purchases"][1:]:
        assert customer.startswith("C") and 0 <= int(customer[1:]) < 50 and len(customer) == 6
        assert segment in ("enterprise", "mid-market", "smb")
        assert region in ("north", "south", "east", "west")
        assert int(quantity) >= 1 and stamp.isdigit()


def test_each_customer_has_one_segment_and_region(data):
    seen = collections.defaultdict(set)
    for customer, segment, region, *_ in data["purchases"][1:]:
        seen[customer].add((segment, region))
    assert len(seen) > 1
    assert all(len(pairs) == 1 for pairs in seen.values())


def test_timestamps_are_sorted_and_in_2025(data):
    stamps = [int(r[4]) for r in data["purchases"][1:]]
    assert stamps == sorted(stamps)
    assert YEAR_START <= stamps[0] and stamps[-1] < YEAR_END
    months = {datetime.datetime.fromtimestamp(s, UTC).month for s in stamps}
    assert months == set(range(1, 13))  # spread over the whole year


def test_customers_rebuy_products(data):
    pairs = collections.Counter((r[0], r[3]) for r in data["purchases"][1:])
    repeated = [pair for pair, n in pairs.items() if n > 1]
    assert len(repeated) >= 10


def test_repeat_one_means_one_distinct_product_per_customer(tmp_path):
    # repeat=1.0: after the first purchase, every purchase re-orders something bought
    # before, so each customer buys exactly one distinct product
    paths = generate(str(tmp_path), customers=20, products=30, purchases=300, repeat=1.0, seed=2)
    distinct = collections.defaultdict(set)
    for customer, _, _, product, _, _ in rows_of(paths["purchases"])[1:]:
        distinct[customer].add(product)
    assert all(len(items) == 1 for items in distinct.values())


def test_popularity_is_skewed(data):
    counts = collections.Counter(r[3] for r in data["purchases"][1:])
    top = sorted(counts.values(), reverse=True)[:4]  # the top 10% of 40 products
    assert sum(top) > 0.10 * 2000
    assert sum(top) > 2 * 0.10 * 2000  # and clearly so, not just by noise


def test_smallest_sizes_work(tmp_path):
    paths = generate(str(tmp_path), customers=1, products=1, purchases=3, categories=1, dim=1)
    rows = rows_of(paths["purchases"])[1:]
    assert [(r[0], r[3]) for r in rows] == [("C00000", "P00000")] * 3
    product = rows_of(paths["products"])[1]
    assert [product[0], product[2]] == ["P00000", "cat_00"]


@pytest.mark.parametrize("bad", [dict(customers=0), dict(products=0), dict(purchases=0),
                                 dict(categories=0), dict(dim=0), dict(customers=-3)])
def test_bad_arguments_raise(tmp_path, bad):
    with pytest.raises(ValueError, match="must be positive"):
        generate(str(tmp_path / "out"), **bad)
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("repeat", [1.5, -0.1])
def test_repeat_outside_0_1_raises(tmp_path, repeat):
    with pytest.raises(ValueError):
        generate(str(tmp_path), customers=3, products=3, purchases=10, repeat=repeat)
