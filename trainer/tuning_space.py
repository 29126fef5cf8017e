"""What a hyperparameter search may change, as data, and how a trial's values reach a spec.

One table (:data:`TUNABLE`) is read by validation (``tuning.space`` keys, their
types), by the search (:mod:`trainer.tuning`: the keras-tuner search space) and
by the Trainer (:func:`apply_values`: the Tuner's ``best_hyperparameters``
reaching ``run_fn`` through ``fn_args.hyperparameters``). Every key changes
only what the model and its training read, never the Transform: all trials
share one Transform's output. No TensorFlow: validation imports this module.
"""
import copy

# key -> the value's type, and whether a range samples it on a log scale unless it says.
TUNABLE = {
    "training.learning_rate": {"type": float, "log": True},
    "training.batch_size": {"type": int, "log": True},
    "model.embedding_dim": {"type": int, "log": True},
    "model.output_dim": {"type": int, "log": True},
    "model.temperature": {"type": float, "log": True},
    "query_tower.dropout": {"type": float, "log": False},
    "candidate_tower.dropout": {"type": float, "log": False},
    "query_tower.l2": {"type": float, "log": False},
    "candidate_tower.l2": {"type": float, "log": False},
}
# Keys a user may reach for that a search over one Transform's output cannot try.
NOT_TUNABLE = {
    "history.max_length": "a history's max_length shapes the Transform's output (the data "
                          "preparation's history columns), and every trial shares one "
                          "Transform: compare lengths with separate runs",
    "training.epochs": "the search trains each trial for tuner epochs (tuning.max_epochs); "
                       "the Trainer's epochs stay the config's (early stopping picks them)",
}
ALGORITHMS = ("random", "bayesian", "hyperband")
HYPERBAND_FACTOR = 3  # successive halving keeps a third of the trials at each round
# The keys keras-tuner adds to a trial's values (Hyperband's bracket bookkeeping).
TUNER_PREFIX = "tuner/"
# What a search keeps in its project folder (trainer.tuning writes it; the pipeline's Tuner
# step copies it into its tuner_results output's KEPT_SEARCH folder,
# pipelines.build.components.tuner_records; pipelines.runners.trials reads it back).
TRIALS_FOLDER = "trial_records"  # one JSON per finished trial
SLICE_FILE = "slice.json"        # the validation slice, the objective, the baselines there
TENSORBOARD_FOLDER = "tensorboard"  # each trial's TensorBoard run (the HParams view)
KEPT_SEARCH = "search"


def typed(key, value):
    """``value`` as ``key``'s type (an integer key takes a whole number only).

    Raises:
      ValueError: a non-whole number for an integer key.
    """
    if TUNABLE[key]["type"] is int:
        if float(value) != int(value):
            raise ValueError(f"{value!r} is not a whole number")
        return int(value)
    return float(value)


def tuned_values(values):
    """The tunable keys' values of a trial (``HyperParameters.values``), tuner keys left out.

    Raises:
      ValueError: a key that is neither tunable nor keras-tuner's.
    """
    out = {}
    for key, value in (values or {}).items():
        if key.startswith(TUNER_PREFIX):
            continue
        if key not in TUNABLE:
            raise ValueError(f"the tuned hyperparameters name {key!r}, which is not tunable; "
                             f"known: {', '.join(sorted(TUNABLE))}")
        out[key] = typed(key, value)
    return out


def apply_values(spec, values):
    """A copy of ``spec`` with the tuned ``values`` (``{'training.learning_rate': 0.003}``)."""
    out = copy.deepcopy(spec)
    for key, value in tuned_values(values).items():
        section, name = key.split(".")
        out[section][name] = value
    return out


def is_tuner_config(hyperparameters):
    """Whether ``fn_args.hyperparameters`` is a keras-tuner ``HyperParameters`` config (the
    Tuner's ``best_hyperparameters``), not the runtime parameters' plain mapping."""
    return (isinstance(hyperparameters, dict) and "values" in hyperparameters
            and "space" in hyperparameters)


def slice_words(about):
    """The validation slice's rule in words, from its ``about`` record (``slice.json``):
    e.g. "the last 0.1 of train by time", or per query under a user_time split."""
    if about.get("per_query"):
        return f"each query's last {about['fraction']:g} of its train rows by time"
    return f"the last {about['fraction']:g} of train by time"
