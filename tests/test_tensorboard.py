"""TensorBoard reads a finished run's logs: step and epoch scalars, served by its own server.

A few training steps of the generated ``run_fn`` (the Transform output of
tests/test_trainer_run.py) into a pipeline folder's ``tfx/Trainer/model_run/1``;
then TensorBoard's own event loader, and its HTTP server on a loopback port, must find
loss, gradient norms per tower, clip rate and learning rate every ``SCALARS_EVERY`` steps
and once per epoch, with the epoch values of ``training_metrics.json``.
"""
import json
import socket
import time
import urllib.parse
import urllib.request

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from pipelines.cli import main as cli
from pipelines.build import codegen
from pipelines.config.schema import Config, apply_overrides
from test_trainer_run import BASE, fn_args_for, transformed  # noqa: F401 (the fixture)
from tft_helpers import load_module
from trainer.monitoring import SCALARS_EVERY, STEP_SCALARS

TAGS = ["loss", "clip_rate", "learning_rate", "grad_norm/query", "grad_norm/candidate"]


@pytest.fixture(scope="module")
def finished(transformed, tmp_path_factory):  # noqa: F811
    tmp, _ = transformed
    root = tmp_path_factory.mktemp("tb") / "pipe"
    cfg = Config.from_dict(apply_overrides(json.loads(json.dumps(BASE)), [
        "training.epochs=2", "training.learning_rate=0.02"]))
    module_path = root / "modules" / "trainer" / "trainer_module.py"
    module_path.parent.mkdir(parents=True)
    module_path.write_text(codegen.trainer_module(cfg))
    module = load_module(str(module_path), "generated_trainer_for_tensorboard")
    args = fn_args_for(tmp, root)
    args.model_run_dir = str(root / "tfx" / "Trainer" / "model_run" / "1")
    args.train_steps = 2 * (2 * SCALARS_EVERY + 3)  # 23 steps an epoch
    record = module.run_fn(args)
    assert record["status"] == "completed"
    return root, record


def _scalars(folder):
    events = EventAccumulator(folder)
    events.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                  for e in events.Tensors(tag)] for tag in events.Tags()["tensors"]}


def test_the_event_loader_finds_step_and_epoch_scalars(finished):
    root, record = finished
    logs = root / "tfx" / "Trainer" / "model_run" / "1" / "logs"
    got = _scalars(str(logs / STEP_SCALARS))
    per_epoch = 2 * SCALARS_EVERY + 3
    for tag in TAGS:  # steps 10, 20 (epoch 1), 30, 40 (epoch 2): the global step counts on
        assert [s for s, _ in got[f"step/{tag}"]] == [10, 20, 30, 40], tag
        assert [s for s, _ in got[f"epoch/{tag}"]] == [1, 2], tag
    assert all(e["steps"] == per_epoch for e in record["epochs"])
    for (_, value), entry in zip(got["epoch/grad_norm/query"], record["epochs"]):
        assert value == pytest.approx(entry["grad_norm"]["query"]["mean"], rel=1e-6)
    for (_, value), entry in zip(got["epoch/loss"], record["epochs"]):
        assert value == pytest.approx(entry["loss"], rel=1e-6)
    assert all(v == pytest.approx(0.02) for _, v in got["step/learning_rate"])
    assert all(0.0 <= v <= 1.0 for _, v in got["step/clip_rate"])
    assert all(v > 0 for _, v in got["step/grad_norm/candidate"])
    keras = _scalars(str(logs / "train"))  # Keras' own TensorBoard callback, per epoch
    assert [s for s, _ in keras["epoch_loss"]] == [0, 1]


def test_twotower_tensorboard_serves_the_run(finished, capsys):
    root, _ = finished
    assert cli.main(["tensorboard", str(root), "--print-logdir"]) == 0
    logs = capsys.readouterr().out.strip()
    assert logs == str(root / "tfx" / "Trainer" / "model_run" / "1" / "logs")
    from tensorboard import program

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    board = program.TensorBoard()
    board.configure(logdir=logs, host="127.0.0.1", port=port, reload_interval=1)
    url = board.launch()
    deadline = time.time() + 60
    while True:  # the first load runs in the server's own thread
        with urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=30) as answer:
            tags = json.load(answer)
        if STEP_SCALARS in tags or time.time() > deadline:
            break
        time.sleep(0.5)
    assert set(tags) >= {STEP_SCALARS, "train"}
    assert {f"step/{t}" for t in TAGS} <= set(tags[STEP_SCALARS])
    query = urllib.parse.urlencode({"run": STEP_SCALARS, "tag": "step/loss"})
    with urllib.request.urlopen(f"{url}data/plugin/scalars/scalars?{query}", timeout=30) as got:
        points = json.load(got)  # [wall time, step, value]
    assert [p[1] for p in points] == [10, 20, 30, 40]


def test_a_folder_without_a_run_is_one_line(tmp_path, capsys):
    (tmp_path / "modules" / "trainer").mkdir(parents=True)
    (tmp_path / "modules" / "trainer" / "trainer_module.py").write_text("SPEC = {}\n")
    assert cli.main(["tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: twotower tensorboard: ") and "run the pipeline first" in err
    assert len(err.strip().splitlines()) == 1
