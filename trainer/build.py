"""Building the two-tower model from a config and the Trainer's inputs.

Part of the runtime the generated Trainer module imports.
"""
import numpy as np

from transform.naming import CANDIDATE_POSITION, TIMESTAMP
from trainer.inputs import check_cutoffs
from trainer.model import ExactIndex, TwoTowerModel
from trainer.prior import DemandPrior
from trainer.towers import build_towers, tower_inputs


def build_model(spec, tft_output, inputs):
    """The uncompiled two-tower model over the catalog of :func:`load_inputs`.

    Returns:
      ``{'model', 'table' (the catalog's candidate-tower inputs by position),
      'ks', 'num_candidates', 'softmax'}``.
    """
    model_cfg = spec["model"]
    query_tower, candidate_tower = build_towers(spec, tft_output.vocabulary_size_by_name)
    catalog, counts = inputs["catalog"], inputs["counts"]
    num_candidates = len(counts)
    ks = check_cutoffs(spec, num_candidates)
    keys = [i["key"] for i in tower_inputs(spec, "candidate_tower")] + [CANDIDATE_POSITION]
    table = {key: catalog[key] for key in dict.fromkeys(keys)}
    bias = np.zeros(num_candidates, np.float32) if model_cfg["candidate_bias"] else None
    prior = demand_prior(model_cfg, inputs["train"], num_candidates)
    offset = bias is not None or prior is not None
    dim = model_cfg["output_dim"] + (1 if offset else 0)  # see TwoTowerModel
    index = ExactIndex(table[CANDIDATE_POSITION], dim, k=max(ks))
    softmax = softmax_mode(model_cfg, num_candidates)
    if prior is not None and softmax == "in_batch":
        raise ValueError("model.demand_prior needs negatives from the catalog: set "
                         "model.softmax to sampled or full_catalog")
    sampling = None
    if model_cfg["logq_correction"] and softmax == "in_batch":
        sampling = np.maximum(counts, 1.0) / counts.sum()
    model = TwoTowerModel(query_tower, candidate_tower, index, ks,
                          temperature=model_cfg["temperature"],
                          remove_accidental_hits=model_cfg["remove_accidental_hits"],
                          sampling_probability=sampling,
                          catalog=table if softmax in ("full_catalog", "sampled") else None,
                          candidate_bias=bias,
                          sampled_negatives=(min(model_cfg["sampled_negatives"], num_candidates)
                                             if softmax == "sampled" else None),
                          prior=prior, weighted=bool(spec["data"].get("weight")))
    return {"model": model, "table": table, "ks": ks, "num_candidates": num_candidates,
            "softmax": softmax}


def demand_prior(model_cfg, rows, num_candidates):
    """The :class:`DemandPrior` over the fitted ``rows`` (``load_pairs`` with time), or None."""
    options = model_cfg.get("demand_prior")
    if options is None:
        return None
    return DemandPrior(rows[CANDIDATE_POSITION], rows[TIMESTAMP], num_candidates,
                       options["windows"], options["all_time"], options["smoothing"])


def softmax_mode(model_cfg, num_candidates):
    """``full_catalog``, ``sampled`` or ``in_batch``: ``auto`` is full_catalog up to
    ``full_catalog_max`` candidates, then in_batch (sampled with a demand prior, which
    needs catalog negatives)."""
    if model_cfg["softmax"] == "auto":
        if num_candidates <= model_cfg["full_catalog_max"]:
            return "full_catalog"
        return "sampled" if model_cfg.get("demand_prior") is not None else "in_batch"
    return model_cfg["softmax"]


def served_prior(prior, rows, options):
    """The prior of a served (or later-evaluated) model: the learned weights of ``prior``
    over the counts of ``rows`` (every interaction before the moment it serves)."""
    out = DemandPrior(rows[CANDIDATE_POSITION], rows[TIMESTAMP], int(prior.table.shape[1]),
                      options["windows"], options["all_time"], options["smoothing"])
    out.weights.assign(prior.weights)
    return out
