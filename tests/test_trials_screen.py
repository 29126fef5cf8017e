"""A run's Tuner step on its result screen (pipelines.runners.trials.search_lines): the
trial count, the trial whose values the Trainer trained, and the validation slice, read from
records written here by hand in the layout trainer.tuning keeps; and the warning on a slice
or eval split that scores too few queries to mean anything."""
import json

from pipelines.runners.trials import search_lines
from trainer.tuning_space import KEPT_SEARCH, SLICE_FILE, TRIALS_FOLDER

SLICE = {"fraction": 0.1, "slice_first": "2001-02-01", "slice_last": "2001-02-28",
         "slice_rows": 1234, "queries": 156, "fit_first": "2000-11-01", "fit_last": "2001-01-31",
         "fit_rows": 9876, "objective": "recall_at_10", "baselines": {"popularity": 0.05}}


def kept(tmp_path, trials):
    folder = tmp_path / KEPT_SEARCH
    (folder / TRIALS_FOLDER).mkdir(parents=True)
    (folder / SLICE_FILE).write_text(json.dumps(SLICE))
    for t in trials:
        (folder / TRIALS_FOLDER / f"{t['trial']}.json").write_text(json.dumps(t))
    return str(tmp_path)


def trial(number, lr, objective, stopped=None):
    return {"trial": str(number), "values": {"training.learning_rate": lr},
            "objective": objective, "epochs": 1, "seconds": 3.0, "stopped": stopped}


def test_the_trained_trial_and_the_slice_are_named(tmp_path):
    results = kept(tmp_path, [trial(0, 0.002, 0.11), trial(1, 0.004, 0.0,
                                                           {"reason": "gradient_collapse"})])
    lines = search_lines(results, {"training.learning_rate": 0.002})
    assert lines == [
        "tuner: 2 trials (1 stopped); the Trainer trained trial 0's values (recall_at_10 "
        "0.1100 on the slice, training.learning_rate 0.002)",
        "validation slice: the last 0.1 of train by time, 2001-02-01..2001-02-28: 1,234 rows, "
        "156 queries scored; trials fit on 2000-11-01..2001-01-31: 9,876 rows (eval and test "
        "never read)"]


def test_no_tuner_step_no_lines(tmp_path):
    assert search_lines("", None) == []
    assert search_lines(str(tmp_path), None) == []  # a Tuner output without records


def test_a_slice_with_few_queries_is_called_noise(tmp_path):
    from pipelines.runners.trials import slice_line

    assert "warning" not in slice_line(SLICE | {"queries": 100})
    few = slice_line(SLICE | {"queries": 12}).splitlines()
    assert len(few) == 2 and few[1].startswith(
        "warning: the validation slice scores only 12 queries (fewer than 100)")
    assert "raise tuning.validation_fraction" in few[1] and "user_time" in few[1]
    per_query = slice_line(SLICE | {"queries": 12, "per_query": True}).splitlines()
    assert per_query[0].startswith("validation slice: each query's last 0.1 of its train rows")
    assert "user_time" not in per_query[1]  # it is already cut per query


def screen_with(queries):
    from pipelines.terminal.console import result_lines

    evaluation = {"split": "eval", "queries": queries, "model": {"recall_at_10": 0.2},
                  "popularity": {"recall_at_10": 0.1}}
    return result_lines({"metrics": {"status": "completed", "evaluation": evaluation}})


def test_an_eval_split_with_few_queries_is_called_noise_on_the_run_screen():
    few = [line for line in screen_with(10) if line.startswith("warning:")]
    assert few == [
        "warning: the eval split scores only 10 queries (fewer than 100): these figures and the "
        "gate's verdict are mostly noise; for a log whose users were active at different times "
        "(ratings) set data.split.method: user_time, else raise data.split.eval_fraction"]
    assert not [line for line in screen_with(100) if line.startswith("warning:")]
