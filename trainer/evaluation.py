"""Full-catalog ranking metrics, for the model and a popularity baseline.

Everything here is numpy: scores for every (query, candidate) pair are ranked
over the whole deduplicated catalog (candidates are catalog positions), each
query's earlier candidates are excluded, and Recall, NDCG and HitRate are
averaged over queries.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np


def top_k_excluding(scores, exclude, k):
    """Top-``k`` column indices of each row of ``scores``, best first.

    Args:
      scores: ``[num_queries, num_candidates]`` float array (not modified).
      exclude: list of int arrays, the columns each row may not return.
      k: results per row, at most ``num_candidates``.

    Returns:
      ``[num_queries, k]`` int array.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    for row, cols in enumerate(exclude):
        scores[row, cols] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def ranking_metrics(top, truth, ks):
    """Recall@k, NDCG@k and HitRate@k averaged over queries.

    Args:
      top: ``[num_queries, K]`` ranked candidate indices, K >= max(ks).
      truth: list of int arrays, each query's relevant candidates (non-empty).
      ks: cut-offs.

    Returns:
      ``{'recall_at_10': ..., 'ndcg_at_10': ..., 'hit_rate_at_10': ..., ...}``.
    """
    if len(truth) == 0:
        raise ValueError("no queries to evaluate: the eval split shares no users and items "
                         "with the training split")
    discounts = 1.0 / np.log2(np.arange(2, top.shape[1] + 2))
    sums = {f"{name}_at_{k}": 0.0 for k in ks for name in ("recall", "ndcg", "hit_rate")}
    for row, relevant in enumerate(truth):
        hits = np.isin(top[row], relevant)
        for k in ks:
            found = hits[:k]
            ideal = discounts[:min(len(relevant), k)].sum()
            sums[f"recall_at_{k}"] += found.sum() / len(relevant)
            sums[f"ndcg_at_{k}"] += (discounts[:k][found]).sum() / ideal
            sums[f"hit_rate_at_{k}"] += float(found.any())
    return {name: value / len(truth) for name, value in sums.items()}


def evaluation_queries(seen_groups, held_groups, snapshot_queries):
    """Queries to evaluate, their relevant candidates, and what each already had.

    A query is evaluated when it has a state before its first held-out
    interaction (a snapshot row) and at least one held-out candidate it did
    not already have: nothing is forced into the candidate list and nothing
    seen is counted as a hit. Those left out are counted, never hidden.

    Args:
      seen_groups: ``{query: catalog positions it had before}`` (excluded from
        its ranking, never hits).
      held_groups: ``{query: catalog positions in the held-out split}``.
      snapshot_queries: raw ids of the queries with a snapshot row.

    Returns:
      ``(queries, truth, exclude, counts)``: sorted raw query ids, their
      relevant and seen positions, and ``{'held_out_queries', 'cold_queries'
      (no interaction before the held-out ones), 'queries_without_new_items'}``.
    """
    with_state = set(snapshot_queries)
    queries, truth, exclude = [], [], []
    counts = {"held_out_queries": len(held_groups), "cold_queries": 0,
              "queries_without_new_items": 0}
    empty = np.zeros(0, dtype=np.int64)
    for query in sorted(held_groups):
        if query not in with_state:
            counts["cold_queries"] += 1
            continue
        seen = seen_groups.get(query, empty)
        relevant = np.setdiff1d(held_groups[query], seen)
        if not len(relevant):
            counts["queries_without_new_items"] += 1
            continue
        queries.append(query)
        truth.append(relevant)
        exclude.append(seen)
    return queries, truth, exclude, counts


def popularity(train_positions, num_candidates):
    """Training interaction counts per catalog position, ``[num_candidates]`` float."""
    valid = train_positions[(train_positions >= 0) & (train_positions < num_candidates)]
    return np.bincount(valid, minlength=num_candidates).astype(np.float64)


def evaluate_full_catalog(query_embeddings, candidate_embeddings, counts, truth, exclude, ks,
                          with_popularity=True):
    """Model and popularity metrics over the full catalog.

    Args:
      query_embeddings: ``[num_queries, dim]``.
      candidate_embeddings: ``[num_candidates, dim]``, row i = candidate key i.
      counts: ``[num_candidates]`` training popularity.
      truth, exclude: as from :func:`evaluation_queries`.
      ks: cut-offs.
      with_popularity: also rank by popularity (the same for every epoch).
    """
    k, chunk = max(ks), 1024
    # Popularity ranks by count, ties by lower candidate index, identically for every query
    # (scored by rank, so ties break exactly whatever the counts' magnitude).
    order = np.lexsort((np.arange(len(counts)), -counts))
    pop_row = np.empty(len(counts), dtype=np.float64)
    pop_row[order] = np.arange(len(counts), 0, -1)
    model_top, pop_top = [], []
    for start in range(0, len(truth), chunk):  # bounded memory: chunk x catalog scores
        rows = slice(start, start + chunk)
        model_top.append(top_k_excluding(query_embeddings[rows] @ candidate_embeddings.T,
                                         exclude[rows], k))
        if with_popularity:
            pop_scores = np.broadcast_to(pop_row, (len(exclude[rows]), len(counts)))
            pop_top.append(top_k_excluding(pop_scores, exclude[rows], k))
    model_top = np.concatenate(model_top)
    result = {"queries": len(truth), "model": ranking_metrics(model_top, truth, ks),
              "model_top": model_top}
    if with_popularity:
        result["popularity"] = ranking_metrics(np.concatenate(pop_top), truth, ks)
    return result


def coverage(top, k, counts, head=20):
    """How much of the catalog the model's top-``k`` lists use.

    Args:
      top: ``[num_queries, K]`` ranked candidate positions, K >= k.
      counts: ``[num_candidates]`` popularity; ``head``: how many of the most
        popular candidates count as "the head".

    Returns:
      ``{'k', 'candidates' (distinct candidates in the lists), 'catalog',
      'share' (of the catalog), 'head', 'head_slots' (share of the lists' slots
      held by the ``head`` most popular candidates)}``.
    """
    top = np.asarray(top)[:, :k]
    order = np.lexsort((np.arange(len(counts)), -np.asarray(counts, dtype=np.float64)))
    distinct = int(len(np.unique(top))) if top.size else 0
    return {"k": int(k), "candidates": distinct, "catalog": int(len(counts)),
            "share": distinct / max(len(counts), 1), "head": int(min(head, len(counts))),
            "head_slots": float(np.isin(top, order[:head]).mean()) if top.size else 0.0}


def rank_within(candidate_lists, score_lists, k):
    """Each query's own candidates ranked by their scores, best first, at most ``k``.

    Ties go to the lower catalog position. Returns one int array per query.
    """
    ranked = []
    for candidates, scores in zip(candidate_lists, score_lists):
        order = np.lexsort((candidates, -np.asarray(scores, dtype=np.float64)))
        ranked.append(np.asarray(candidates)[order][:k])
    return ranked


def buy_again_metrics(candidate_lists, rankings, truth, ks):
    """Recall@k and HitRate@k of rankings of each query's own candidates ("buy again").

    ``rankings`` maps a name to per-query ranked candidate arrays (from
    :func:`rank_within`); ``truth``: each query's held-out candidates among its own.
    Cut-offs at or above a query's number of candidates count it as found.
    """
    out = {}
    for name, ranked in rankings.items():
        sums = {f"{m}_at_{k}": 0.0 for k in ks for m in ("recall", "hit_rate")}
        for top, relevant in zip(ranked, truth):
            for k in ks:
                found = np.isin(top[:k], relevant).sum()
                sums[f"recall_at_{k}"] += found / len(relevant)
                sums[f"hit_rate_at_{k}"] += float(found > 0)
        out[name] = {key: value / max(len(truth), 1) for key, value in sums.items()}
    out["queries"] = len(truth)
    out["mean_candidates"] = float(np.mean([len(c) for c in candidate_lists])) if truth else 0.0
    return out

