"""Learning-rate range test: judging a rate, recommending one (exact, hand-made logs)."""
import math

import pytest

from pipelines.config.schema import ConfigError
from pipelines.runners.lrcheck import default_rates, format_report, parse_rates
from trainer.lr_probe import loss_slope, recommend, summarize

NORMS = [5.0, 4.0, 3.0, 2.0, 1.0]


def test_loss_slope_is_per_100_steps_and_skips_non_finite():
    assert loss_slope([3.0, 2.0, 1.0]) == pytest.approx(-100.0)
    assert loss_slope([3.0, math.nan, 1.0]) == pytest.approx(-100.0)
    assert loss_slope([math.inf]) is None


def test_summarize_ok_uses_first_step_and_last_fifth():
    got = summarize(0.01, [10.0, 9.0, 8.0, 7.0, 6.0], NORMS, NORMS)
    assert got["status"] == "ok" and got["steps"] == 5
    assert got["first_loss"] == 10.0 and got["last_loss"] == 6.0  # last 20% = 1 step
    assert got["slope_per_100_steps"] == pytest.approx(-100.0)
    assert got["grad_norm"]["query"] == {"median": 3.0, "max": 5.0, "last": 1.0}


@pytest.mark.parametrize("losses,status", [
    ([10.0, 10.0, 10.0, 10.0, 9.95], "flat"),        # fell 0.5% < 1%
    ([10.0, 10.0, 10.0, 10.0, 9.85], "ok"),          # fell 1.5%
    ([10.0, 1e6, 40.0, 20.0, 11.0], "diverged"),      # ended above the first step
    ([10.0, 9.0, math.nan, 8.0, 7.0], "diverged"),    # a NaN anywhere
])
def test_summarize_status(losses, status):
    assert summarize(0.1, losses, NORMS, NORMS)["status"] == status


def test_summarize_reports_the_monitors_reason():
    collapse = {"reason": "gradient_collapse", "message": "gradients collapsed: ..."}
    got = summarize(0.1, [10.0, 9.0], [1.0, 0.0], [1.0, 0.0], collapse)
    assert got["status"] == "collapsed" and got["message"] == "gradients collapsed: ..."
    nan = {"reason": "non_finite_loss", "message": "loss became nan ..."}
    assert summarize(0.1, [10.0, 9.0], [1.0, 1.0], [1.0, 1.0], nan)["status"] == "diverged"


def result(rate, status, last):
    return {"rate": rate, "status": status, "last_loss": last, "first_loss": 10.0,
            "steps": 300}


def test_recommend_lowest_final_loss_within_the_ceiling():
    results = [result(0.001, "ok", 8.0), result(0.003, "ok", 7.0), result(0.01, "ok", 7.5),
               result(0.03, "ok", 6.0), result(0.1, "diverged", 50.0)]
    rate, reason = recommend(results, ceiling=0.01)
    assert rate == 0.003 and "0.03 reached a lower loss but is above the safe limit 0.01" in reason
    assert recommend(results, ceiling=None)[0] == 0.03


def test_recommend_none_when_nothing_is_healthy():
    rate, reason = recommend([result(0.1, "collapsed", 9.0), result(0.3, "flat", 9.9)])
    assert rate is None and "no rate trained healthily" in reason
    rate, reason = recommend([result(0.3, "ok", 5.0)], ceiling=0.05)
    assert rate is None and "above the safe limit 0.05" in reason


def test_default_and_parsed_rates():
    assert default_rates(0.01) == [0.001, 0.003, 0.01, 0.03, 0.1]
    assert default_rates(0.05) == [0.005, 0.015, 0.05, 0.15, 0.5]
    assert parse_rates("0.01, 0.001,0.01") == [0.001, 0.01]
    for bad in ("0.01,abc", "-1", "nan", "0"):
        with pytest.raises(ConfigError, match="--rates"):
            parse_rates(bad)


def test_format_report_names_the_rate_to_set():
    summary = summarize(0.003, [10.0, 9.0, 8.0, 7.0, 6.0], NORMS, NORMS)
    text = format_report({"optimizer": "adam", "steps": 5, "results": [summary],
                          "recommended": 0.003, "reason": "lowest loss", "configured_rate": 0.01,
                          "report_file": "r.json"})
    assert "recommended training.learning_rate: 0.003" in text
    assert "--set training.learning_rate=0.003" in text
