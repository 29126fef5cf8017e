"""The TFRS two-tower model, its exact candidate index and its optimizer.

Part of the runtime the generated Trainer module imports.
"""
import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer.parameters import check_parameters
from transform.naming import CANDIDATE_POSITION, TIMESTAMP, WEIGHT
from trainer.towers import embed_table


def require_legacy_keras():
    """TFRS 0.7 needs Keras 2: fail at once, not after an epoch, if it's Keras 3."""
    if not tf.keras.__name__.startswith("tf_keras"):
        raise RuntimeError("tf.keras is Keras 3 here but TensorFlow Recommenders needs Keras 2: "
                           "install tf-keras and set TF_USE_LEGACY_KERAS=1 before TensorFlow "
                           "is imported")


def make_optimizer(training):
    """The configured optimizer, with gradient clipping inside it.

    Raises:
      ValueError: the learning rate is not a number in the runtime parameters' range, (0, 10).
    """
    rate = training["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        problem = f"{rate!r} is not a number"
    else:  # the runtime parameters' table: its range (trainer.parameters)
        typed, refused = check_parameters({"learning_rate": rate})
        rate = typed.get("learning_rate", rate)
        problem = refused[0][1] if refused else None
    if problem:
        raise ValueError(f"training.learning_rate: {problem}")
    classes = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
               "sgd": tf.keras.optimizers.SGD}
    clip = {"global_norm": "global_clipnorm", "norm": "clipnorm", "value": "clipvalue"}
    kwargs = {}
    if training["clipping"] in clip:
        kwargs[clip[training["clipping"]]] = training["clip_value"]
    elif training["clipping"] != "none":
        raise ValueError(f"unknown training.clipping {training['clipping']!r}")
    return classes[training["optimizer"]](learning_rate=rate, **kwargs)


class ExactIndex(tfrs.layers.factorized_top_k.TopK):
    """Brute-force top-k over a fixed set of candidates, re-indexable in place.

    Unlike ``BruteForce.index`` (which creates new variables on every call),
    the variables are created once with the table's shape, so a compiled eval
    step keeps seeing the current embeddings after ``index``.

    Args:
      identifiers: ``[num_candidates]`` ids returned for the top candidates.
      dim: embedding width.
      k: default number of results.
    """

    def __init__(self, identifiers, dim, k, name="exact_index"):
        super().__init__(k=k, name=name)
        self._identifiers = tf.Variable(identifiers, trainable=False, name="identifiers")
        self._candidates = tf.Variable(tf.zeros([len(identifiers), dim]), trainable=False,
                                       name="candidates")

    def index(self, candidates, identifiers=None):
        """Replaces the candidate embeddings ``[num_candidates, dim]`` (and ids) in place."""
        if identifiers is not None:
            self._identifiers.assign(identifiers)
        self._candidates.assign(candidates)
        return self

    def index_from_dataset(self, candidates):
        raise TypeError("ExactIndex keeps one fixed table: fill it with index(embeddings)")

    def call(self, queries, k=None):
        scores = tf.linalg.matmul(queries, self._candidates, transpose_b=True)
        values, positions = tf.math.top_k(scores, k=k or self._k)
        return values, tf.gather(self._identifiers, positions)

    def is_exact(self):
        return True


def squared_norm(grad):
    """The squared L2 norm of one gradient (dense, or an ``IndexedSlices``' values, as
    ``tf.linalg.global_norm`` and the optimizer's clipping count it), a float32 scalar;
    0 for a variable without a gradient (None)."""
    if grad is None:
        return tf.constant(0.0)
    values = grad.values if isinstance(grad, tf.IndexedSlices) else grad
    return tf.reduce_sum(tf.square(tf.cast(values, tf.float32)))


def clip_statistic(optimizer, grads, global_norm=None):
    """``(statistic, limit)``: what the optimizer's clipping compares, before clipping.

    global_norm: the global norm of all gradients (``global_norm`` when the caller has
    it); norm: the largest per-variable norm; value: the largest absolute element; no
    clipping: the global norm, with limit None.
    """
    if global_norm is None:
        global_norm = tf.linalg.global_norm(grads)
    if getattr(optimizer, "global_clipnorm", None):
        return global_norm, optimizer.global_clipnorm
    if getattr(optimizer, "clipnorm", None):
        return tf.reduce_max([tf.linalg.global_norm([g]) for g in grads]), optimizer.clipnorm
    if getattr(optimizer, "clipvalue", None):
        values = [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads]
        return tf.reduce_max([tf.reduce_max(tf.abs(v)) for v in values]), optimizer.clipvalue
    return global_norm, None


class TwoTowerModel(tfrs.Model):
    """Query tower x candidate tower, trained with the TFRS retrieval task.

    Candidates are identified by their catalog position (CANDIDATE_POSITION,
    see :mod:`trainer.data`). Training uses in-batch softmax (duplicates of a
    candidate in a batch are not counted as negatives when
    ``remove_accidental_hits``), or, when a ``catalog`` is given, an exact
    softmax over every candidate of the catalog. Both losses are means over
    the batch's rows, so the clip value, ``l2`` and the collapse thresholds
    don't depend on the batch size. FactorizedTopK metrics run on evaluation
    only, against the deduplicated candidate index, matched by position; rows
    whose candidate is outside the catalog are left out of evaluation. Each
    training step reports each tower's gradient norm (the collapse monitor
    reads them) and whether clipping changed the gradients.

    With ``candidate_bias`` (``[num_candidates]`` initial values), a learned
    offset per catalog position is added to each score: ``q . c / T + b``.
    It is computed as one dot product of *scoring vectors*, ``[q, T]`` for a
    query and ``[c, b]`` for a candidate (then divided by ``T`` as usual), so
    the index, the evaluation, ScaNN and serving need nothing else; without
    the bias the scoring vectors are the tower outputs.

    With a ``prior`` (a :class:`trainer.prior.DemandPrior`), each score also
    gains the candidate's learned demand prior: in the training loss at the
    row's own moment (``TIMESTAMP``; negatives come from the catalog, so each
    is scored at the query's moment), and in evaluation, the index and
    serving as of the end of the fitted rows, carried in the same extra
    component as the bias (``[c, b + prior]``).

    With ``weighted`` (``data.weight``), the training loss is the weighted mean
    ``sum(w * loss) / sum(w)`` over the batch's rows, ``w`` the row's WEIGHT
    (the TFRS task's ``sample_weight``, or the catalog loss's): a row of weight
    3 counts as three rows, and the loss keeps its scale. Evaluation (its loss
    and metrics) stays unweighted: each held-out row counts once.
    """

    def __init__(self, query_tower, candidate_tower, index, ks, temperature=None,
                 remove_accidental_hits=True, sampling_probability=None, catalog=None,
                 candidate_bias=None, sampled_negatives=None, prior=None, weighted=False):
        super().__init__()
        self.weighted = weighted
        self.prior = prior
        # with a catalog: the number of catalog candidates a training step samples as
        # negatives (None: all of them, the exact softmax)
        self.sampled_negatives = sampled_negatives
        self.bias = (None if candidate_bias is None else
                     tf.Variable(tf.constant(candidate_bias, tf.float32), name="candidate_bias"))
        # {key: [num_candidates, ...]} features of every catalog candidate, by position;
        # when given, the training loss is an exact softmax over it.
        self.catalog = (None if catalog is None else
                        {k: tf.constant(v) for k, v in catalog.items()})
        self.temperature = temperature
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.index = index
        # [num_candidates] probability that an in-batch candidate is each position; when
        # given, training logits are corrected by -log(q) (logQ correction), so popular
        # candidates are not over-penalised for appearing often as in-batch negatives.
        self.sampling_probability = (None if sampling_probability is None else
                                     tf.constant(sampling_probability, tf.float32))
        self.task = tfrs.tasks.Retrieval(
            # per row (NONE), averaged in compute_loss: Keras refuses SUM_OVER_BATCH_SIZE
            # outside compile() under a distribution strategy
            loss=tf.keras.losses.CategoricalCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
            metrics=tfrs.metrics.FactorizedTopK(candidates=index, ks=ks),
            temperature=temperature, remove_accidental_hits=remove_accidental_hits)
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")

    @property
    def has_offset(self):
        """Whether scoring vectors carry the extra offset component (bias and/or prior)."""
        return self.bias is not None or self.prior is not None

    def query_vectors(self, query):
        """The query side of the score, ``[batch, dim]`` or ``[batch, dim + 1]``."""
        if not self.has_offset:
            return query
        scale = tf.fill([tf.shape(query)[0], 1], tf.constant(self.temperature or 1.0, query.dtype))
        return tf.concat([query, scale], axis=1)

    def candidate_vectors(self, candidates, positions, with_prior=True):
        """The candidate side of the score, ``[n, dim]`` or ``[n, dim + 1]``.

        The offset component is the bias plus, ``with_prior``, the demand
        prior as of the end of the fitted rows (the training loss adds the
        prior at each row's own moment instead).
        """
        if not self.has_offset:
            return candidates
        positions = tf.maximum(tf.cast(positions, tf.int64), 0)
        offset = tf.zeros(tf.shape(positions), candidates.dtype)
        if self.bias is not None:
            offset += tf.gather(self.bias, positions)
        if self.prior is not None and with_prior:
            offset += tf.gather(self.prior.static(), positions)
        return tf.concat([candidates, offset[:, tf.newaxis]], axis=1)

    def embed_queries(self, table):
        """Scoring vectors of a dict of query-tower input arrays, numpy ``[rows, d]``."""
        return self.query_vectors(tf.constant(embed_table(self.query_tower, table))).numpy()

    def catalog_vectors(self, table):
        """Scoring vectors of the catalog table (by position), numpy ``[n, d]``."""
        embeddings = tf.constant(embed_table(self.candidate_tower, {
            k: v for k, v in table.items() if k != CANDIDATE_POSITION}))
        return self.candidate_vectors(embeddings, table[CANDIDATE_POSITION]).numpy()

    def row_weights(self, features, training):
        """``[batch]`` float32 example weights of a training batch, or None (unweighted)."""
        if not (training and self.weighted):
            return None
        return tf.reshape(tf.cast(features[WEIGHT], tf.float32), [-1])

    def catalog_loss(self, query, labels, training=False, features=None):
        """Softmax cross-entropy over the catalog, averaged over the batch.

        Exact over every candidate, or, in training with ``sampled_negatives``
        = m, over each row's own candidate and m candidates drawn uniformly
        without replacement from the catalog, their exponentials weighted by
        n / m so that the sum estimates the full softmax's (a sampled
        candidate that is the row's own is not counted as a negative).

        Args:
          query: ``[batch, dim]`` query embeddings.
          labels: ``[batch]`` catalog positions; rows outside the catalog (-1)
            are left out of the mean.
          features: the batch's features (the sampled loss embeds each row's
            own candidate from them).
        """
        labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
        known = labels >= 0
        queries = self.query_vectors(query)
        scale = self.temperature or 1.0
        size = tf.shape(self.catalog[CANDIDATE_POSITION], out_type=tf.int64)[0]
        moments = (self.prior.moments(features[TIMESTAMP]) if self.prior is not None
                   else None)
        if training and self.sampled_negatives is not None:
            sampled = tf.random.shuffle(tf.range(size))[:self.sampled_negatives]
            rows = {k: tf.gather(v, sampled) for k, v in self.catalog.items()}
            negatives = self.candidate_vectors(self.candidate_tower(rows, training=True),
                                               sampled, with_prior=False)  # [m, d]
            own = self.candidate_vectors(self.candidate_tower(features, training=True), labels,
                                         with_prior=False)
            positive = tf.reduce_sum(queries * own, axis=1, keepdims=True) / scale  # [batch, 1]
            weight = tf.math.log(tf.cast(size, tf.float32) / tf.cast(tf.shape(sampled)[0],
                                                                      tf.float32))
            logits = tf.linalg.matmul(queries, negatives, transpose_b=True) / scale + weight
            if self.prior is not None:
                positive += self.prior.at(moments, labels)[:, tf.newaxis]
                logits += self.prior.pairwise(moments, sampled)
            logits = tf.where(tf.equal(labels[:, tf.newaxis], sampled[tf.newaxis, :]),
                              -1e9, logits)  # [batch, m]
            logits = tf.concat([positive, logits], axis=1)
            labels_used = tf.zeros_like(labels)
        else:
            candidates = self.candidate_vectors(
                self.candidate_tower(self.catalog, training=training),
                self.catalog[CANDIDATE_POSITION], with_prior=False)  # [n, d]
            logits = tf.linalg.matmul(queries, candidates, transpose_b=True) / scale  # [b, n]
            if self.prior is not None:
                logits += self.prior.pairwise(moments)
            labels_used = labels
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.boolean_mask(labels_used, known), logits=tf.boolean_mask(logits, known))
        weights = self.row_weights(features, training) if features is not None else None
        if weights is not None:  # the weighted mean (the class docstring)
            weights = tf.boolean_mask(weights, known)
            return tf.math.divide_no_nan(tf.reduce_sum(losses * weights), tf.reduce_sum(weights))
        return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))

    def compute_loss(self, features, training=False):
        positions = features[CANDIDATE_POSITION]
        if not training:  # candidates outside the catalog can't be retrieved: not scored
            known = positions >= 0
            features = {k: tf.boolean_mask(v, known) for k, v in features.items()}
            positions = features[CANDIDATE_POSITION]
        query = self.query_tower(features, training=training)
        if self.catalog is not None:
            if not training:  # FactorizedTopK against the index; its loss is not used
                self.task(self.query_vectors(query), self.candidate_vectors(
                    self.candidate_tower(features, training=False), positions),
                          candidate_ids=positions, compute_metrics=True,
                          compute_batch_metrics=False)
            return self.catalog_loss(query, positions, training, features)
        candidate = self.candidate_vectors(self.candidate_tower(features, training=training),
                                           positions)
        probability = None
        if training and self.sampling_probability is not None:
            probability = tf.gather(self.sampling_probability, positions)
        weights = self.row_weights(features, training)
        losses = self.task(
            self.query_vectors(query), candidate, candidate_ids=positions,
            candidate_sampling_probability=probability, sample_weight=weights,
            compute_metrics=not training, compute_batch_metrics=False)
        if weights is not None:  # per row times its weight: the weighted mean
            return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.reduce_sum(weights))
        return tf.reduce_mean(losses)

    def train_step(self, features):
        # With N replicas (several GPUs) each sees 1/N of the batch and the optimizer sums
        # their gradients: each differentiates its mean loss / N, so the sum is the gradient
        # of the whole batch's mean (and the penalties are counted once).
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(features, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
            total = total / tf.cast(replicas, total.dtype) if replicas > 1 else total
        query_vars = self.query_tower.trainable_variables
        candidate_vars = self.candidate_tower.trainable_variables + (
            [self.bias] if self.bias is not None else []) + (
            [self.prior.weights] if self.prior is not None else [])
        # A table shared by both towers (candidate ids, histories) is updated once, and
        # counts in both towers' gradient norms.
        variables = list({v.ref(): v for v in query_vars + candidate_vars}.values())
        grads = tape.gradient(total, variables)
        # each gradient's squared norm once: the global, per-tower and clipping norms sum them
        squares = {v.ref(): squared_norm(g) for v, g in zip(variables, grads)}
        global_norm = tf.sqrt(tf.add_n(list(squares.values())))
        statistic, limit = clip_statistic(self.optimizer, grads, global_norm)
        self.optimizer.apply_gradients(zip(grads, variables))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result(), "batch_loss": loss,
                "grad_norm": global_norm,
                "clipped": (tf.cast(statistic > limit, tf.float32) if limit is not None
                            else tf.constant(0.0)),
                "query_grad_norm": tf.sqrt(tf.add_n([squares[v.ref()] for v in query_vars])),
                "candidate_grad_norm": tf.sqrt(tf.add_n(
                    [squares[v.ref()] for v in candidate_vars]))}

    def test_step(self, features):
        loss = self.compute_loss(features, training=False)
        self.loss_tracker.update_state(loss)
        logs = {m.name: m.result() for m in self.task.metrics}
        logs["loss"] = self.loss_tracker.result()
        return logs

    @property
    def metrics(self):
        return [self.loss_tracker] + list(self.task.metrics)
