"""Why a purchase-log window's eval split favours all-time popularity: popularity rankings
with each look-back of the demand prior, raw and smoothed, scored at the pipeline's own
eval cut (the last ``--eval-fraction`` of train.csv by time), beside the rows per day.

    .venv/bin/python scripts/why_window.py runs/bench/ta-feng/window-4/split/train.csv

train.csv is ../shared/bench/split.py's (user_id,item_id,timestamp). Only rows before the
eval cut are counted, as the pipeline does; each eval user's new items (not bought before the
cut) are the truth, their earlier items excluded from the ranking. BENCHMARKS.md, "Ta-Feng
window 4", is its output. Needs numpy and pandas (the project's venv).
"""
import argparse

import numpy as np
import pandas as pd

DAY = 86_400
WINDOWS = (1, 3, 7, 14, 28)


def recall(order, truth, seen, k):
    """Mean recall@k over users of the ranking ``order`` (item ids, best first)."""
    out = []
    for user, items in truth.items():
        had = seen.get(user, set())
        top = [i for i in order if i not in had][:k]
        out.append(len(items.intersection(top)) / len(items))
    return float(np.mean(out))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("train")
    parser.add_argument("--eval-fraction", type=float, default=0.1)
    args = parser.parse_args()
    df = pd.read_csv(args.train, dtype={"user_id": str, "item_id": str})
    times = np.sort(df.timestamp.values)
    cut = times[int(len(df) * (1 - args.eval_fraction))]
    train, held = df[df.timestamp < cut], df[df.timestamp >= cut]
    seen = train.groupby("user_id").item_id.apply(set).to_dict()
    truth = {}
    for user, items in held[held.user_id.isin(seen)].groupby("user_id").item_id:
        new = set(items) - seen[user]
        if new:
            truth[user] = new
    day = lambda t: pd.to_datetime(t, unit="s").dt.date  # noqa: E731
    print(f"eval cut {pd.to_datetime(cut, unit='s').date()}: {len(train):,} rows before it, "
          f"{len(held):,} after, {len(truth):,} users with new items")
    per_day = train.groupby(day(train.timestamp)).size()
    print(f"rows per day before the cut: median {int(per_day.median()):,}; the last 7 days: "
          + ", ".join(f"{d:%d %b} {n:,}" for d, n in per_day.tail(7).items()))
    counts = train.item_id.value_counts()
    share = (counts + 1) / (counts.sum() + len(counts))
    pseudo = len(train) / max(1, (train.timestamp.max() - train.timestamp.min()) // DAY + 1)
    rows = [("all-time popularity", counts)]
    for w in WINDOWS:
        recent = train[train.timestamp >= cut - w * DAY].item_id.value_counts()
        recent = recent.reindex(counts.index).fillna(0)
        rows.append((f"last {w} d, raw counts", recent * 1e9 + counts))  # ties: all-time
        rows.append((f"last {w} d, smoothed share",
                     np.log((recent + pseudo * share) / (recent.sum() + pseudo))))
    print(f"(smoothed: pseudo-count {pseudo:,.0f} rows, a day of the mean volume)")
    print(f"{'ranking':30s} {'R@10':>7s} {'R@20':>7s} {'R@100':>7s}")
    for name, scores in rows:
        order = scores.sort_values(ascending=False, kind="stable").index[:500].tolist()
        print(f"{name:30s} " + " ".join(f"{recall(order, truth, seen, k):7.4f}"
                                        for k in (10, 20, 100)))


if __name__ == "__main__":
    main()
