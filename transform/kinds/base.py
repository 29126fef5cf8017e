"""What every feature kind says about itself (see :mod:`transform.kinds`).

A kind is one object: the options that apply to it, the defaults it fills
in, the type of the raw column it reads, whether it has a vocabulary, how it
enters a tower (embedded rows or dense values), its own validation and its
Transform. ``feature`` is always a plain dict (``Config.to_dict()``'s
feature, or the frozen ``SPEC``'s), so the runtime and the config read one
table. No TensorFlow here: a kind's :meth:`FeatureKind.transform` imports it
when a Transform runs.

Every per-kind choice the library makes is an attribute or a method here,
overridden in the kind's own file, and read where it applies: nothing outside
``transform/kinds/`` branches on a kind's name.
"""
from transform.naming import CANDIDATE_KEY, QUERY_KEY, transformed_name

# The options of every kind; a kind lists which of the others apply to it.
COMMON_OPTIONS = ("name", "kind", "embedding_dim")
# Options only the towers read: the Transform module's SPEC leaves them out, so changing one
# never re-runs a Transform (pipelines.build.codegen.transform_spec); a kind adds its own.
MODEL_OPTIONS = ("embedding_dim",)
STRING, FLOAT, INT = "string", "float", "int"
VOCABULARY_OPTIONS = ("max_vocab_size", "frequency_threshold", "oov_buckets")
# What data preparation checks in each raw cell a kind reads (pipelines.data.sql.checks).
ONE_LINE, NUMBER, MOMENT = "one_line", "number", "moment"

# name -> FeatureKind: every kind, filled once by transform.kinds (which finds the kind files)
KINDS = {}


def kind_of(feature):
    """The :class:`FeatureKind` of a feature dict.

    Raises:
      KeyError: naming the unknown kind (validation reports it before this runs).
    """
    try:
        return KINDS[feature["kind"]]
    except KeyError:
        raise KeyError(f"unknown feature kind {feature['kind']!r}; known: "
                       f"{', '.join(KINDS)}") from None


def shared_key(feature, data):
    """The reserved key a feature reads (QUERY_KEY, CANDIDATE_KEY), or None:
    :meth:`FeatureKind.shared_key` of its kind. ``data``: the config's ``data`` section.
    A feature of an unknown kind (validation names it) shares nothing."""
    kind = KINDS.get(feature["kind"])
    return kind.shared_key(feature, data) if kind else None


def feature_input(feature, data):
    """The transformed key the Trainer reads for ``feature``."""
    return shared_key(feature, data) or transformed_name(feature["name"])


def vocabulary_problems(feature):
    """The rules of a kind with its own vocabulary (``VOCABULARY_OPTIONS``)."""
    found = []
    if feature.get("max_vocab_size") is not None and feature["max_vocab_size"] < 1:
        found.append(("max_vocab_size", "must be at least 1"))
    if feature.get("frequency_threshold", 0) < 0:
        found.append(("frequency_threshold", "must be at least 0"))
    if not 1 <= feature.get("oov_buckets", 1) <= 1000:
        found.append(("oov_buckets", "must be in 1..1000"))
    return found


def length_problems(feature):
    """The rule of a sequence kind's ``max_length``."""
    if feature.get("max_length") is not None and not 1 <= feature["max_length"] <= 256:
        return [("max_length", "must be in 1..256")]
    return []


def bucket_problems(feature):
    """The rule of ``num_buckets`` (numeric and timestamp kinds)."""
    if not 2 <= feature.get("num_buckets", 10) <= 1000:
        return [("num_buckets", "must be in 2..1000")]
    return []


def vocabulary_options(feature):
    """The keyword arguments of ``transform.features.id_index``/``multi_index``."""
    return dict(top_k=feature["max_vocab_size"], frequency_threshold=feature["frequency_threshold"],
                oov_buckets=feature["oov_buckets"])


class FeatureKind:
    """One feature kind. Subclasses set the class attributes and override what differs."""

    name = ""
    order = 0              # its place in lists and messages
    reads = "column"       # "column": one raw column; "columns": several; "history": none
    options = ()           # kind-specific options that apply (besides COMMON_OPTIONS)
    model_options = ()     # of those, the ones only the towers read (besides MODEL_OPTIONS)
    defaults = {}          # option -> value filled where the config leaves it null
    choices = {}           # option -> allowed values
    value_type = STRING    # the raw column's type (STRING, FLOAT, INT) or None: any
    vocabulary = None      # "own": a vocabulary of its values; "candidate": the candidate ids'
    sequence = False       # enters as a padded [batch, max_length] index matrix, pooled
    query_only = False     # describes the query or the moment, never a candidate
    column_hint = ""       # why a kind that reads no 'column' has none (for its message)
    shares_ids = False     # on data.query_id/candidate_id: reads the shared id vocabulary
    cells = None           # what prepare checks in its raw cells: ONE_LINE, NUMBER, MOMENT
    restricts = False      # its values filter Vector Search (a restrict namespace per feature)

    def applies(self, option):
        """Whether ``option`` means something for this kind."""
        return option in COMMON_OPTIONS or option in self.options or (
            option == "column" and self.reads == "column") or (
            option == "columns" and self.reads == "columns") or (
            option == "default" and self.reads == "column")

    def transform_reads(self, option):
        """Whether the Transform reads ``option`` (it applies, and not only to the towers)."""
        return self.applies(option) and option not in MODEL_OPTIONS + self.model_options

    def shared_key(self, feature, data):
        """The reserved key the feature reads instead of its own Transform output, or None.

        A kind that ``shares_ids`` (``id``), on ``data['query_id']`` or
        ``data['candidate_id']``, uses the shared id vocabulary instead of its
        own, so the candidate tower's id embedding, the candidate index and
        serving all agree on one index per candidate. Returns QUERY_KEY,
        CANDIDATE_KEY or None.
        """
        if not self.shares_ids:
            return None
        if feature["column"] == data["query_id"]:
            return QUERY_KEY
        if feature["column"] == data["candidate_id"]:
            return CANDIDATE_KEY
        return None

    def history(self, feature):
        """``(max_length, separator)`` of the history cells the SQL program builds for the
        feature (the query's earlier candidates, :mod:`pipelines.data.sql.histories`), or
        None: the feature reads the files' columns."""
        return None

    def pooling(self, feature):
        """How a ``sequence`` feature's ``[batch, max_length]`` embeddings become one
        (``trainer.towers``): ``mean``, ``recency`` or ``attention``."""
        return "mean"

    def dense_width(self, feature):
        """Width of the feature as dense float values in the tower; 0 if it is embedded."""
        return 0

    def table_rows(self, feature):
        """Embedding rows of a feature without a vocabulary (buckets, hashes), else None."""
        return None

    def tokens(self, feature, value):
        """The vocabulary entries one raw cell holds (estimates before the Transform runs)."""
        return [value]

    def problems(self, feature):
        """``[(option or '', message)]`` this kind's own rules find in ``feature``."""
        found = []
        for option, allowed in self.choices.items():
            if feature.get(option) not in allowed:
                found.append((option, f"must be one of {', '.join(allowed)}"))
        return found

    def context_problems(self, feature, tower, spec):
        """``[(option or '', message)]`` of rules that look beyond the feature: ``tower`` is
        where it is listed, ``spec`` the whole config as a dict."""
        return []

    def describe(self, feature):
        """One line for summaries: what the feature reads and how it enters the tower."""
        columns = feature.get("columns") if self.reads == "columns" else [feature.get("column")]
        source = "the query's earlier candidates" if self.reads == "history" else \
            ", ".join(repr(c) for c in columns)
        width = self.dense_width(feature)
        return f"{self.name} of {source}: " + (f"{width} value(s)" if width else "embedded")

    def transform(self, inputs, feature, context):
        """The Transform output (a dense tensor with a batch dimension) of ``feature``.

        ``context``: ``{'candidate_vocabulary': the deferred candidate-id vocabulary}``.
        """
        raise NotImplementedError(f"feature kind {self.name!r} has no transform")
