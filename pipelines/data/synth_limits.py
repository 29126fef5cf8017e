"""How large a synthetic dataset `twotower synth` makes, at most, and the seeds it takes.

No NumPy (the command line's help quotes these limits), no TensorFlow.
"""
from __future__ import annotations

import numbers
from typing import List, Tuple

from trainer.parameters import seed_problem

# The most of each a dataset may have: 10 x the largest benchmark (scripts/bench_scale.py).
# Memory grows with customers (their latent vectors) and products (a block's affinities,
# BLOCK x products), time and disk with purchases: 100 million rows take about 35 minutes
# and 4 GB (measured: 200,000 rows in 4 s, 8.2 MB), written twice at the peak (a file per
# day, then the sorted CSV).
MAXIMUM = {"customers": 3_000_000, "products": 100_000, "purchases": 100_000_000}
BYTES_PER_ROW = 100  # disk a purchase row needs at the peak (its day file and the CSV)


def size_problems(customers: int, products: int, purchases: int,
                  seed: int) -> List[Tuple[str, str]]:
    """``[(name, why)]`` for sizes outside 1..:data:`MAXIMUM` and a seed outside the seed
    range (:func:`trainer.parameters.seed_problem`); empty when all are fine."""
    out = []
    for name, value in (("customers", customers), ("products", products),
                        ("purchases", purchases)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            out.append((name, f"must be at least 1, got {value!r}"))
        elif value > MAXIMUM[name]:
            out.append((name, f"{value:,} is more than the {MAXIMUM[name]:,} the generator "
                        "makes (bounded so that it ends in minutes, in memory and on disk)"))
    if seed_problem(seed):
        out.append(("seed", seed_problem(seed)))
    return out
