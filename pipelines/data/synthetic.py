"""A seeded generator of synthetic B2B purchase logs: the embedded demo dataset.

Generative process (documented in docs/data.md, "The demo dataset"):

1. ``categories`` product categories, each with a centroid in a latent taste
   space of ``dim`` dimensions and a typical price (log-normal).
2. Products: a category, a latent vector (category centroid + noise), a price
   (the category's price x log-normal noise), a popularity offset (normal, so
   a few products sell much more than others) and a name: a brand and one of
   the two kinds of goods its category sells ("Acme valves").
3. Customers: a segment (enterprise, mid-market, smb) and a region; the
   latent vector is the segment centroid + a regional tilt + individual noise.
   Activity is log-normal, so a few customers buy a lot.
4. Each purchase of a customer, in time order over one year: with probability
   ``repeat`` a re-order of a product the customer already bought, otherwise
   a product drawn from softmax(affinity * u.v / sqrt(dim) + popularity).

Same arguments, same files, byte for byte. Memory is bounded whatever the size:
affinities are computed for blocks of customers (never a dense customers x
products matrix), and rows go to one temporary file per day of the year, each
sorted on its own and appended in day order (the same order as one global
sort, since days partition time).
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile

import numpy as np

from pipelines.csvsafe import Writer
from pipelines.data.synth_limits import BYTES_PER_ROW, size_problems
from pipelines.data.written import atomic, left_by_gone_processes

SEGMENTS = ("enterprise", "mid-market", "smb")
BRANDS = ("Acme", "Borealis", "Cobalt", "Dynamo", "Everest", "Fulcrum", "Granite", "Helix")
NOUNS = ("bolts", "valves", "cable", "gloves", "sensors", "pumps", "filters", "bearings",
         "drills", "paint", "tape", "ladders", "hoses", "relays", "fuses", "clamps", "brackets",
         "gaskets", "switches", "lamps", "pallets", "labels", "cartons", "solvent")
REGIONS = ("north", "south", "east", "west")
START = 1_735_689_600  # 2025-01-01T00:00:00Z
DAYS = 365
YEAR = DAYS * 24 * 3600
BLOCK = 512  # customers whose affinities are computed at once
FILES = {"purchases": "purchases.csv", "products": "products.csv"}
SCRATCH = re.compile(r"\.synth-(\d+)-.+")  # the per-day files of a run, by process id


def remove_stale_scratch(out_dir: str) -> None:
    """Removes ``.synth-<pid>-*`` folders whose process is gone (a killed generator's)."""
    for name in left_by_gone_processes(out_dir, SCRATCH):
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def generate(out_dir: str, customers: int = 600, products: int = 400, purchases: int = 20_000,
             categories: int = 12, dim: int = 8, affinity: float = 3.0, repeat: float = 0.25,
             seed: int = 7) -> dict:
    """Writes ``purchases.csv`` and ``products.csv`` into ``out_dir``; returns their paths."""
    if min(customers, products, purchases, categories, dim) < 1:
        raise ValueError("customers, products, purchases, categories and dim must be positive")
    problems = size_problems(customers, products, purchases, seed)
    if problems:
        raise ValueError("; ".join(f"{name}: {why}" for name, why in problems))
    if not 0.0 <= repeat <= 1.0:
        raise ValueError(f"repeat is a probability: got {repeat}, expected 0..1")
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(categories, dim))
    product_category = rng.integers(categories, size=products)
    product_vec = centroids[product_category] + 0.5 * rng.normal(size=(products, dim))
    category_price = np.exp(rng.uniform(2.0, 6.0, size=categories))
    price = np.round(category_price[product_category] * rng.lognormal(0, 0.3, products), 2)
    popularity = rng.normal(0.0, 1.0, size=products)
    # Each category sells two kinds of goods; a product's name is a brand and one of them.
    # Names come from their own random stream, so they don't change the purchases.
    name_rng = np.random.default_rng([seed, 1])
    category_nouns = name_rng.integers(len(NOUNS), size=(categories, 2))
    names = [f"{BRANDS[name_rng.integers(len(BRANDS))]} "
             f"{NOUNS[category_nouns[product_category[p], name_rng.integers(2)]]}"
             for p in range(products)]

    segment = rng.choice(len(SEGMENTS), size=customers, p=[0.2, 0.3, 0.5])
    region = rng.integers(len(REGIONS), size=customers)
    segment_vec = rng.normal(size=(len(SEGMENTS), dim))
    region_vec = 0.5 * rng.normal(size=(len(REGIONS), dim))
    customer_vec = segment_vec[segment] + region_vec[region] + 0.8 * rng.normal(
        size=(customers, dim))
    activity = rng.lognormal(0.0, 0.8, size=customers)
    per_customer = rng.multinomial(purchases, activity / activity.sum())

    os.makedirs(out_dir, exist_ok=True)
    paths = {key: os.path.join(out_dir, name) for key, name in FILES.items()}
    remove_stale_scratch(out_dir)  # a killed run's day files (SIGKILL runs no cleanup)
    free = shutil.disk_usage(out_dir).free
    if purchases * BYTES_PER_ROW > free:
        raise OSError(28, f"{purchases:,} purchases need about "
                      f"{purchases * BYTES_PER_ROW / 1e9:.1f} GB there, and "
                      f"{free / 1e9:.1f} GB are free: choose fewer or another folder",
                      out_dir)
    scratch = tempfile.mkdtemp(prefix=f".synth-{os.getpid()}-", dir=out_dir)
    try:
        days = [open(os.path.join(scratch, f"{d:03d}.csv"), "w", newline="", encoding="utf-8")
                for d in range(DAYS)]
        writers = [csv.writer(handle) for handle in days]
        for first in range(0, customers, BLOCK):
            block = slice(first, min(customers, first + BLOCK))
            logits = affinity * customer_vec[block] @ product_vec.T / np.sqrt(dim) + popularity
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits)
            probs /= probs.sum(axis=1, keepdims=True)
            for c in range(block.start, block.stop):
                _customer(rng, c, int(per_customer[c]), probs[c - block.start], products,
                          repeat, segment[c], region[c], writers)
        for handle in days:
            handle.close()
        # written beside each file, renamed over it when whole; cells escaped for
        # spreadsheets like every CSV twotower writes (none of these needs it)
        with atomic(paths["purchases"], "w", newline="", encoding="utf-8") as handle:
            writer = Writer(handle)
            writer.writerow(["customer_id", "segment", "region", "product_id", "timestamp",
                             "quantity"])
            for d in range(DAYS):
                with open(os.path.join(scratch, f"{d:03d}.csv"), newline="",
                          encoding="utf-8") as day:
                    rows = sorted((int(r[0]), r[1], r[2], r[3], r[4], int(r[5]))
                                  for r in csv.reader(day))
                writer.writerows((r[1], r[2], r[3], r[4], r[0], r[5]) for r in rows)
    finally:
        shutil.rmtree(scratch)
    with atomic(paths["products"], "w", newline="", encoding="utf-8") as handle:
        writer = Writer(handle)
        writer.writerow(["product_id", "name", "category", "price"])
        writer.writerows((f"P{p:05d}", names[p], f"cat_{int(product_category[p]):02d}",
                          f"{price[p]:.2f}") for p in range(products))
    return paths


def _customer(rng, c, n, probs, products, repeat, segment, region, writers) -> None:
    """One customer's purchases over the year, each to its day's file."""
    if n == 0:
        return
    times = np.sort(START + rng.integers(0, YEAR, size=n))
    fresh = rng.choice(products, size=n, p=probs)
    repeats = rng.random(n) < repeat
    quantity = 1 + rng.poisson(3.0 if segment == 0 else 1.0, size=n)
    history = []
    for i in range(n):
        item = int(history[rng.integers(len(history))]) if repeats[i] and history else int(
            fresh[i])
        history.append(item)
        writers[(int(times[i]) - START) // 86_400].writerow(
            (int(times[i]), f"C{c:05d}", SEGMENTS[segment], REGIONS[region], f"P{item:05d}",
             int(quantity[i])))
