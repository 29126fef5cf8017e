"""The naming contract shared by the Transform and the Trainer.

Every transformed feature and every vocabulary file gets its name here, and
nowhere else (what a feature of each kind reads and how it enters a tower is
its kind's, :mod:`transform.kinds`). Feature names are validated identifiers that never start with
'_', so the reserved keys below (which do) can never collide with them.

Part of the runtime both generated modules import.
"""

QUERY_KEY = "_query_key"            # int64 [batch]: index of the raw query id
CANDIDATE_KEY = "_candidate_key"    # int64 [batch]: index of the raw candidate id
QUERY_ID = "_query_id_raw"          # string [batch]: the raw query id, exactly as written
CANDIDATE_ID = "_candidate_id_raw"  # string [batch]: the raw candidate id, exactly as written
# int64 [batch]: the row's data.timestamp in epoch seconds (-1 where the row has none, e.g. a
# catalog row); emitted only when data.timestamp is set. The Trainer's demand prior counts
# interactions by it; no tower reads it.
TIMESTAMP = "_timestamp_raw"
# float32 [batch]: the row's example weight, data.weight clipped to [0, data.weight_clip]
# (0 where the row has none, e.g. a catalog row); emitted only when data.weight is set. The
# Trainer's training loss weighs each row by it; no tower reads it.
WEIGHT = "_weight"
WEIGHT_COLUMN = "__twotower_weight"  # prepared column holding the clipped data.weight
# int64 [batch]: the candidate's row in the catalog (-1 if not in it); added by the Trainer
# from CANDIDATE_ID, never by the Transform: the catalog is every servable candidate,
# including candidates without training interactions (which share the OOV id row).
CANDIDATE_POSITION = "_candidate_position"
QUERY_VOCAB = "_query_id"           # vocabulary file of raw query ids
CANDIDATE_VOCAB = "_candidate_id"   # vocabulary file of raw candidate ids (deduplicated)
PADDING = -1                        # pads multi-valued features; never a vocabulary index
HISTORY_PREFIX = "__twotower_history_"  # prepared column holding a history feature's ids
CYCLES = (86_400.0, 604_800.0, 31_557_600.0)  # day, week, year (s): cyclical timestamp periods

# The keys of the config's data section the Transform reads (transform.preprocess.transform_all
# and transform.kinds.shared_key): the Transform module's SPEC holds only these of it.
TRANSFORM_DATA_KEYS = ("query_id", "candidate_id", "timestamp")

# The refit Trainer's custom_config flag (pipelines.build.builder sets it, trainer.training reads it).
REFIT_KEY = "twotower_refit"

# Prepared splits. Interactions: train, eval, test. CATALOG_SPLIT: one row per servable
# candidate (its id and candidate-tower columns). "<split>_queries": one row per query of a
# held-out split, as it stood before its first held-out interaction (query-tower columns of
# its latest earlier row, histories of its earlier interactions): what evaluation embeds.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
TEST_SPLIT = "test"
CATALOG_SPLIT = "catalog"


def has_test_split(split_config):
    """Whether a ``data.split`` config (a dict) holds out a test split after eval."""
    return (split_config.get("test_fraction", 0) > 0 or split_config.get("test_days", 0) > 0
            or bool(split_config.get("test_from")))


def queries_split(split):
    """The split of ``split``'s evaluation queries, e.g. 'eval' -> 'eval_queries'."""
    return split + "_queries"


def transformed_name(feature_name):
    """Name of a feature's Transform output, e.g. 'genres' -> 'genres_xf'."""
    return feature_name + "_xf"


def vocabulary_name(feature_name):
    """Name of a feature's vocabulary file, e.g. 'genres' -> 'vocab_genres'."""
    return "vocab_" + feature_name


def history_column(feature_name):
    """The prepared column of a history feature: the query's earlier candidate ids."""
    return HISTORY_PREFIX + feature_name
