"""What the Trainer reads: the splits' files, the catalog, the fitted rows, held-out sets.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np

from transform.naming import (CANDIDATE_ID, CANDIDATE_POSITION, CATALOG_SPLIT, EVAL_SPLIT,
                              QUERY_ID, QUERY_KEY, TEST_SPLIT, TIMESTAMP, TRAIN_SPLIT,
                              has_test_split, queries_split)
from trainer.data import (catalog_table, load_arrays, load_pairs, make_dataset, position_table,
                          query_counts, query_groups)
from trainer.evaluation import popularity
from trainer.held_out import HeldOutSet
from trainer.towers import tower_inputs


def split_files(spec, train_files, eval_files, refit=False):
    """``{split: file patterns}`` of every split the Trainer reads.

    TFX hands the Trainer the train and eval patterns; the catalog, the query
    snapshots and the test split are their siblings (``Split-<name>``). A
    refit's train patterns are the train and eval splits (it fits on both),
    and it reads no eval snapshots (nothing is left to choose on).
    """
    files = {TRAIN_SPLIT: list(train_files), EVAL_SPLIT: list(eval_files)}
    names = [CATALOG_SPLIT] + ([] if refit else [queries_split(EVAL_SPLIT)])
    if has_test_split(spec["data"]["split"]):
        names += [TEST_SPLIT, queries_split(TEST_SPLIT)]
    for name in names:
        files[name] = [p.replace("Split-" + EVAL_SPLIT, "Split-" + name) for p in eval_files]
        if files[name] == files[EVAL_SPLIT]:
            raise ValueError(f"cannot find the {name} split beside the eval files "
                             f"{list(eval_files)} (expected a Split-{name} folder)")
    return files


def with_time(spec):
    """Whether rows are loaded with their TIMESTAMP: whenever the data has one (the demand
    prior, recent popularity and the buy-again recency baseline count by it)."""
    return bool(spec["data"].get("timestamp"))


def load_inputs(spec, tft_output, files, refit=False):
    """What a model is built from: the catalog, the fitted rows and popularity.

    Without a candidate table (``data.candidates``) the catalog split holds each
    candidate of the **train** split, so a ``refit`` (which fits on train and
    eval) adds the candidates first seen in eval, each with its first fitted
    row's candidate features (:func:`candidates_of_rows`): what it serves is
    every candidate it trained on. The selection model's catalog never holds
    them (its vocabularies and catalog are train's alone).

    Returns:
      ``{'catalog' (see trainer.data.catalog_table), 'train' (QUERY_ID,
      CANDIDATE_POSITION and, with a demand prior, TIMESTAMP per fitted row:
      trainer.data.load_pairs), 'counts' ([num_candidates] fitted interactions
      per position), 'feature_spec', 'positions' (the id -> position table),
      'catalog_from_rows' (how many candidates a refit added)}``.

    Raises:
      ValueError: a training interaction names a candidate outside the catalog.
    """
    feature_spec = tft_output.transformed_feature_spec()
    keys = [i["key"] for i in tower_inputs(spec, "candidate_tower")]
    arrays = load_arrays(files[CATALOG_SPLIT], feature_spec)
    added = 0
    if refit and not spec["data"].get("candidates"):
        arrays, added = candidates_of_rows(arrays, files[TRAIN_SPLIT], feature_spec, keys)
    catalog = catalog_table(arrays, keys)
    train = load_pairs(files[TRAIN_SPLIT], feature_spec, catalog[CANDIDATE_ID],
                       with_time=with_time(spec))
    outside, first = train.pop("outside")
    if outside:
        raise ValueError(f"{outside} training interactions name candidates outside the "
                         f"catalog (first: {first!r}); the catalog split must list them")
    return {"catalog": catalog, "train": train, "feature_spec": feature_spec,
            "counts": popularity(train[CANDIDATE_POSITION], len(catalog[CANDIDATE_ID])),
            "positions": position_table(catalog[CANDIDATE_ID]), "catalog_from_rows": added}


def candidates_of_rows(catalog, patterns, feature_spec, keys, batch_size=8192):
    """The catalog split's rows plus one row per candidate of ``patterns`` it lacks.

    Args:
      catalog: the catalog split's arrays, ``{key: [rows, ...]}``.
      patterns: the fitted rows' files; each missing candidate takes the candidate
        features (``keys``) of its first row there (a candidate's features are the
        same on all its rows: the data preparation refuses one whose rows differ).

    Returns:
      ``({key: [rows + added, ...]} for keys and CANDIDATE_ID, added)``.
    """
    keys = list(dict.fromkeys(list(keys) + [CANDIDATE_ID]))
    known = set(catalog[CANDIDATE_ID].tolist())
    found = {key: [] for key in keys}
    for batch in make_dataset(patterns, feature_spec, batch_size):
        ids = batch[CANDIDATE_ID].numpy()
        new = []
        for i, raw in enumerate(ids.tolist()):
            if raw not in known:
                known.add(raw)
                new.append(i)
        if new:
            for key in keys:
                found[key].append(batch[key].numpy()[new])
    added = sum(len(part) for part in found[CANDIDATE_ID])
    if not added:
        return catalog, 0
    return {key: np.concatenate([catalog[key]] + found[key], axis=0) for key in keys}, added


def check_cutoffs(spec, num_candidates):
    """``model.top_k`` and ``pipeline.serving_k`` must fit in the catalog: no silent drop."""
    too_big = [k for k in spec["model"]["top_k"] if k > num_candidates]
    if too_big:
        raise ValueError(f"model.top_k {too_big} exceeds the catalog's {num_candidates} "
                         f"candidates; use cut-offs of at most {num_candidates}")
    if spec["pipeline"]["serving_k"] > num_candidates:
        raise ValueError(f"pipeline.serving_k {spec['pipeline']['serving_k']} exceeds the "
                         f"catalog's {num_candidates} candidates; lower it")
    return list(spec["model"]["top_k"])


def held_out_set(spec, split, files, feature_spec, catalog_ids, seen_rows):
    """The :class:`HeldOutSet` of ``split`` and its rows (``load_pairs``, with time if the
    prior needs it), each query scored without what it had in ``seen_rows`` (the rows
    before the split: ``{QUERY_ID: [...], CANDIDATE_POSITION: [...]}``)."""
    rows = load_pairs(files[split], feature_spec, catalog_ids, with_time=with_time(spec))
    rows.pop("outside")
    query_keys = [i["key"] for i in tower_inputs(spec, "query_tower")] + [QUERY_KEY]
    snapshots = load_arrays(files[queries_split(split)], feature_spec)
    held = HeldOutSet(split, snapshots, list(dict.fromkeys(query_keys)), rows[QUERY_ID],
                      rows[CANDIDATE_POSITION],
                      query_groups(seen_rows[QUERY_ID], seen_rows[CANDIDATE_POSITION]),
                      query_counts(seen_rows[QUERY_ID], seen_rows[CANDIDATE_POSITION]),
                      seen_rows=seen_rows, num_candidates=len(catalog_ids),
                      baselines=spec["pipeline"].get("baselines"),
                      held_times=rows.get(TIMESTAMP))
    return held, rows


def concatenate(*parts):
    """Row dicts (``load_pairs`` outputs) joined, keeping the keys all of them have."""
    keys = [k for k in (QUERY_ID, CANDIDATE_POSITION, TIMESTAMP) if all(k in p for p in parts)]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}
