"""The TFRS two-tower model, its exact candidate index and its optimizer.

This module is copied verbatim into the generated Trainer module.
"""
import math

import tensorflow as tf
import tensorflow_recommenders as tfrs

from transform.naming import CANDIDATE_KEY


def require_legacy_keras():
    """TFRS 0.7 needs Keras 2: fail at once, not after an epoch, if it's Keras 3."""
    if not tf.keras.__name__.startswith("tf_keras"):
        raise RuntimeError("tf.keras is Keras 3 here but TensorFlow Recommenders needs Keras 2: "
                           "install tf-keras and set TF_USE_LEGACY_KERAS=1 before TensorFlow "
                           "is imported")


def make_optimizer(training):
    """The configured optimizer, with gradient clipping inside it.

    Raises:
      ValueError: the learning rate is not a positive finite number.
    """
    rate = training["learning_rate"]
    if (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate)
            or rate <= 0):
        raise ValueError(f"training.learning_rate must be a positive finite number, got {rate!r}")
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


class TwoTowerModel(tfrs.Model):
    """Query tower x candidate tower, trained with the TFRS retrieval task.

    Training uses in-batch softmax (duplicates of a candidate in a batch are
    not counted as negatives when ``remove_accidental_hits``), or, when a
    ``catalog`` is given, an exact softmax over every candidate; FactorizedTopK
    metrics run on evaluation only, against the deduplicated candidate index,
    matched by candidate id. Each training step reports the global gradient
    norm of each tower, which the collapse monitor reads.
    """

    def __init__(self, query_tower, candidate_tower, index, ks, temperature=None,
                 remove_accidental_hits=True, sampling_probability=None, catalog=None):
        super().__init__()
        # {key: [num_candidates, ...]} features of every deduplicated candidate, ordered by
        # vocabulary index; when given, the training loss is an exact softmax over it.
        self.catalog = (None if catalog is None else
                        {k: tf.constant(v) for k, v in catalog.items()})
        self.temperature = temperature
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.index = index
        # [num_candidate_keys] probability that an in-batch candidate is each key; when
        # given, training logits are corrected by -log(q) (logQ correction), so popular
        # candidates are not over-penalised for appearing often as in-batch negatives.
        self.sampling_probability = (None if sampling_probability is None else
                                     tf.constant(sampling_probability, tf.float32))
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=index, ks=ks),
            temperature=temperature, remove_accidental_hits=remove_accidental_hits)
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")

    def catalog_loss(self, query, labels, training=False):
        """Exact softmax cross-entropy over the whole catalog, summed over the batch.

        Args:
          query: ``[batch, dim]`` query embeddings.
          labels: ``[batch]`` candidate keys (vocabulary indices); rows whose
            key is outside the catalog (OOV in eval) are left out.
        """
        candidates = self.candidate_tower(self.catalog, training=training)  # [n, dim]
        logits = tf.linalg.matmul(query, candidates, transpose_b=True)  # [batch, n]
        if self.temperature:
            logits = logits / self.temperature
        labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
        known = labels < tf.cast(tf.shape(candidates)[0], tf.int64)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.boolean_mask(labels, known), logits=tf.boolean_mask(logits, known))
        return tf.reduce_sum(losses)

    def compute_loss(self, features, training=False):
        query = self.query_tower(features, training=training)
        if self.catalog is not None:
            if not training:  # FactorizedTopK against the index; its loss is not used
                self.task(query, self.candidate_tower(features, training=False),
                          candidate_ids=features[CANDIDATE_KEY], compute_metrics=True,
                          compute_batch_metrics=False)
            return self.catalog_loss(query, features[CANDIDATE_KEY], training)
        candidate = self.candidate_tower(features, training=training)
        probability = None
        if training and self.sampling_probability is not None:
            probability = tf.gather(self.sampling_probability, features[CANDIDATE_KEY])
        return self.task(query, candidate, candidate_ids=features[CANDIDATE_KEY],
                         candidate_sampling_probability=probability,
                         compute_metrics=not training, compute_batch_metrics=False)

    def train_step(self, features):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(features, training=True)
            total = loss + tf.add_n(self.losses) if self.losses else loss
        query_vars = self.query_tower.trainable_variables
        candidate_vars = self.candidate_tower.trainable_variables
        # A table shared by both towers (candidate ids, histories) is updated once, and
        # counts in both towers' gradient norms.
        variables = list({v.ref(): v for v in query_vars + candidate_vars}.values())
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        by_ref = {v.ref(): g for v, g in zip(variables, grads)}
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result(), "batch_loss": loss,
                "query_grad_norm": tf.linalg.global_norm([by_ref[v.ref()] for v in query_vars]),
                "candidate_grad_norm": tf.linalg.global_norm(
                    [by_ref[v.ref()] for v in candidate_vars])}

    def test_step(self, features):
        loss = self.compute_loss(features, training=False)
        self.loss_tracker.update_state(loss)
        logs = {m.name: m.result() for m in self.task.metrics}
        logs["loss"] = self.loss_tracker.result()
        return logs

    @property
    def metrics(self):
        return [self.loss_tracker] + list(self.task.metrics)
