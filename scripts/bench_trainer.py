"""Where a Trainer step's time goes, and the Trainer against the TFRS tutorial, in one run
(BENCHMARKS.md, "The Trainer against the machine").

    nice -n 10 .venv/bin/python scripts/bench_trainer.py --pipeline PIPELINE_ROOT
        --split SPLIT_DIR [--steps 200] [--epochs 2] [--baseline-root /work/main]
        [--out runs/bench-trainer/NAME.json]

``--pipeline`` is a pipeline folder that ran (``<pipeline.root>/<pipeline.name>``): its
newest Transform output (``tfx/Transform/{transformed_examples,transform_graph}/<id>``) and
the Trainer module it generated (``modules/trainer/trainer_module.py``, whose ``SPEC`` is the
config the Trainer ran; the module itself is not imported, its runtime check would refuse a
changed runtime). ``--split`` is the shared protocol's split the pipeline was fed (the TFRS
tutorial trains on its ``train.csv``).

In one run, each in its own process (TensorFlow's state and threads are not shared):

1. for this checkout's runtime, and with ``--baseline-root`` for another checkout's (e.g.
   main, the code before a change), the phases of a training step on ``--steps`` batches:
   ``input``: the Trainer's own ``tf.data`` pipeline alone (read, parse, position lookup);
   ``cached``: ``model.fit`` on those batches held in memory (the model and optimizer
   alone, with the production callbacks); ``fit``: ``model.fit`` on the real pipeline with
   the production callbacks (what a training epoch does, validation excluded); and the
   parts of one step, each a compiled ``tf.function`` with its gradient, timed on one
   cached batch: the query tower (history pooling), the sampled negatives' candidate tower,
   the demand prior's gather, the whole loss (sampled softmax) and the full train step;
2. for each runtime, ``run_training`` itself, the real Trainer end to end, for
   ``--epochs`` epochs (early stopping off), and its recall on the pipeline's own eval
   split (``training_metrics.json``'s evaluation; test is never read);
3. ``../shared/bench/baselines.py tfrs-tutorial`` on the split, run as it is, its
   ``examples/s`` read from its output.

Examples per second count training rows (steps x batch size); the tutorial's figure is
its own (3 epochs x rows / training seconds). A JSON report goes to ``--out``.
"""
from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.environ.get("SHARED", os.path.join(ROOT, "..", "shared")))


def newest(folder):
    """The newest numbered execution folder under ``folder``."""
    found = sorted(glob.glob(os.path.join(folder, "*")), key=lambda p: int(os.path.basename(p)))
    if not found:
        raise SystemExit(f"error: nothing under {folder}; did the pipeline's Transform run?")
    return found[-1]


def pipeline_inputs(pipeline):
    """``(spec, examples_dir, transform_dir)`` of a pipeline folder that ran."""
    module = os.path.join(pipeline, "modules", "trainer", "trainer_module.py")
    if not os.path.exists(module):
        raise SystemExit(f"error: no Trainer module at {module}; pass --pipeline "
                         "<pipeline.root>/<pipeline.name> of a pipeline that ran")
    with open(module, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    spec = next(ast.literal_eval(node.value) for node in tree.body
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SPEC")
    tfx = os.path.join(pipeline, "tfx", "Transform")
    return (spec, newest(os.path.join(tfx, "transformed_examples")),
            newest(os.path.join(tfx, "transform_graph")))


# ---------------------------------------------------------------------------- the worker


def timed_calls(fn, calls):
    """Seconds per call of ``fn`` (after one call that traces it)."""
    fn()
    began = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - began) / calls


def worker(args):
    """One runtime's phases and its end-to-end Trainer run; a JSON line on stdout."""
    import tensorflow as tf

    from transform.naming import CANDIDATE_POSITION, TIMESTAMP, TRAIN_SPLIT
    from trainer import training
    from trainer.data import make_dataset
    from trainer.inputs import split_files
    from trainer.monitoring import CollapseMonitor, MetricsRecorder, StepProgress

    spec, examples, transform_dir = pipeline_inputs(args.pipeline)
    batch_size = spec["training"]["batch_size"]
    files = split_files(spec, [os.path.join(examples, "Split-train", "*")],
                        [os.path.join(examples, "Split-eval", "*")])
    out = {"root": os.path.dirname(os.path.dirname(os.path.abspath(training.__file__))),
           "batch_size": batch_size, "steps": args.steps}
    scratch = tempfile.mkdtemp(prefix="bench-trainer-")
    record = {"epochs": []}
    strategy = tf.distribute.get_strategy()
    if args.skip_phases:
        return end_to_end(args, spec, files, transform_dir, scratch, out)
    tft_output, inputs, built = training._setup(spec, record, files, transform_dir, strategy)
    model = built["model"]
    train_ds = make_dataset(files[TRAIN_SPLIT], inputs["feature_spec"], batch_size, shuffle=True,
                            seed=1, positions=inputs["positions"]).repeat()

    # input alone: the Trainer's tf.data pipeline, batches pulled as fit pulls them
    iterator = iter(train_ds)
    next(iterator)
    began = time.perf_counter()
    batches = [next(iterator) for _ in range(args.steps)]
    out["input_examples_per_second"] = args.steps * batch_size / (time.perf_counter() - began)

    def callbacks():
        training_cfg = spec["training"]
        rec = {"epochs": []}
        return [CollapseMonitor(training_cfg["collapse_patience"],
                                training_cfg["collapse_threshold"], rec,
                                training_cfg["learning_rate"], ratio=training_cfg["collapse_ratio"]),
                MetricsRecorder(rec, {"query": model.query_tower,
                                      "candidate": model.candidate_tower},
                                log_dir=os.path.join(scratch, "logs"), every_epoch=False),
                StepProgress(),
                tf.keras.callbacks.TensorBoard(os.path.join(scratch, "logs"), profile_batch=0)]

    class EpochClock(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.began

    def fit_rate(dataset, with_callbacks=True):
        clock = EpochClock()  # the second epoch: the first traces the step
        model.fit(dataset, epochs=2, steps_per_epoch=args.steps, verbose=0,
                  callbacks=(callbacks() if with_callbacks else []) + [clock])
        return args.steps * batch_size / clock.seconds

    cached = tf.data.Dataset.from_tensor_slices(
        {k: tf.stack([b[k] for b in batches]) for k in batches[0]}).repeat()
    out["cached_examples_per_second"] = fit_rate(cached)
    out["cached_no_callbacks_examples_per_second"] = fit_rate(cached, with_callbacks=False)
    out["fit_examples_per_second"] = fit_rate(train_ds)

    # the parts of one step, forward and gradient, on one cached batch
    batch = batches[0]
    parts = {}
    variables = model.trainable_variables

    def gradient_of(loss_fn):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn()
            return tape.gradient(loss, variables, unconnected_gradients="zero")[0]
        return lambda: step().numpy()

    parts["query_tower"] = gradient_of(
        lambda: tf.reduce_sum(model.query_tower(batch, training=True)))
    if model.catalog is not None and model.sampled_negatives:
        rows = {k: v[:model.sampled_negatives] for k, v in model.catalog.items()}
        parts["negatives_tower"] = gradient_of(
            lambda: tf.reduce_sum(model.candidate_tower(rows, training=True)))
    if model.prior is not None:
        size = int(model.catalog[CANDIDATE_POSITION].shape[0])
        sampled = tf.random.shuffle(tf.range(size, dtype=tf.int64))[:model.sampled_negatives
                                                                     or size]
        moments = model.prior.moments(batch[TIMESTAMP])
        parts["prior_gather"] = gradient_of(
            lambda: tf.reduce_sum(model.prior.pairwise(moments, sampled)))
    parts["loss"] = gradient_of(lambda: model.compute_loss(batch, training=True))
    train_step = tf.function(model.train_step)
    parts["train_step"] = lambda: train_step(batch)["loss"].numpy()
    out["step_ms"] = {name: 1000 * timed_calls(fn, args.part_calls) for name, fn in parts.items()}

    end_to_end(args, spec, files, transform_dir, scratch, out)


def end_to_end(args, spec, files, transform_dir, scratch, out):
    """``run_training`` for ``--epochs`` epochs (0: not run); prints ``out`` with its figures."""
    import tensorflow as tf

    from trainer import training

    if not args.epochs:
        print(json.dumps(out, default=float))
        return
    tf.keras.backend.clear_session()
    run_spec = json.loads(json.dumps(spec))
    run_spec["training"].update(epochs=args.epochs, early_stopping_patience=0, refit=False)
    run_spec["pipeline"]["serving_index"] = "exact"
    meta = {"config_fingerprint": "bench", "library_version": "bench"}
    run = training.run_training(run_spec, meta, files, transform_dir,
                                os.path.join(scratch, "serving"), os.path.join(scratch, "run"))
    out["run"] = {key: run.get(key) for key in ("examples_per_second", "fit_seconds", "seconds")}
    out["run"]["epoch_seconds"] = [e.get("seconds") for e in run["epochs"]]
    out["run"]["evaluation"] = {k: v for k, v in run["evaluation"]["model"].items()
                                if k.startswith("recall_at_")}
    print(json.dumps(out, default=float))


# ---------------------------------------------------------------------------- the driver


def run_worker(root, args):
    """This script's worker on the runtime of checkout ``root`` (its folder first on the path)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--pipeline", args.pipeline,
           "--split", args.split, "--steps", str(args.steps), "--epochs", str(args.epochs),
           "--part-calls", str(args.part_calls)] + (["--skip-phases"] if args.skip_phases else [])
    env = dict(os.environ, PYTHONPATH=root, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    print(f"$ PYTHONPATH={root} {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"error: the worker on {root} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def tutorial(split):
    """The TFRS tutorial model's own examples/s on ``split`` (baselines.py, run as it is)."""
    with tempfile.TemporaryDirectory(prefix="bench-tutorial-") as scratch:
        cmd = [sys.executable, os.path.join(SHARED, "bench", "baselines.py"), "tfrs-tutorial",
               split, os.path.join(scratch, "recs.csv")]
        print("$ " + " ".join(cmd), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    found = re.search(r"\(([0-9.]+) examples/s\)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"error: baselines.py tfrs-tutorial failed:\n{done.stderr[-3000:]}")
    return float(found.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--part-calls", type=int, default=30)
    parser.add_argument("--baseline-root", help="another checkout to measure the same way")
    parser.add_argument("--skip-phases", action="store_true",
                        help="only the end-to-end run and its recall")
    parser.add_argument("--no-tutorial", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.pipeline, args.split = os.path.abspath(args.pipeline), os.path.abspath(args.split)
    if args.worker:
        worker(args)
        return
    began = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    report = {"measured": began, "cores": os.cpu_count(), "load_before": load,
              "pipeline": args.pipeline, "runtimes": {}}
    roots = [ROOT] + ([os.path.abspath(args.baseline_root)] if args.baseline_root else [])
    for root in roots:
        report["runtimes"][root] = run_worker(root, args)
    report["tutorial_examples_per_second"] = None if args.no_tutorial else tutorial(args.split)
    report["load_after"] = os.getloadavg()
    tut = report["tutorial_examples_per_second"]
    for root, got in report["runtimes"].items():
        if args.skip_phases or tut is None:
            print(f"{root}: run_training {got['run']}")
            continue
        print(f"{root}: input {got['input_examples_per_second']:.0f} ex/s, cached steps "
              f"{got['cached_examples_per_second']:.0f} (no callbacks "
              f"{got['cached_no_callbacks_examples_per_second']:.0f}), fit "
              f"{got['fit_examples_per_second']:.0f} = {got['fit_examples_per_second'] / tut:.2f}x "
              f"the tutorial; run_training {got['run']['examples_per_second']:.0f} ex/s; step ms "
              + ", ".join(f"{k} {v:.1f}" for k, v in got["step_ms"].items())
              + f"; eval {got['run']['evaluation']}")
    print(f"tfrs-tutorial: {tut} ex/s; load {load} -> {report['load_after']}")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".partial", "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1, default=float)
        os.replace(args.out + ".partial", args.out)


if __name__ == "__main__":
    main()
