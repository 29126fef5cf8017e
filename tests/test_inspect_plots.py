"""The report's figures read at a glance, and its tables name products (no run needed)."""
import matplotlib.colors

from pipelines.inspect import data, plots
from pipelines.inspect.report import most_frequent


def epochs(rates=(0.01, 0.01, 0.01), clip=(0.08, 0.05, 0.02)):
    out = []
    for n, (rate, share) in enumerate(zip(rates, clip), start=1):
        out.append({"epoch": n, "loss": 3.0 - n * 0.1, "learning_rate": rate, "clip_rate": share,
                    "grad_norm": {"query": {"min": 0.5 * n, "mean": n, "max": 2.0 * n},
                                  "candidate": {"min": 0.2, "mean": 0.4, "max": 0.9}},
                    "eval": {f"full_catalog/{w}recall_at_{k}": 0.1 * n + k / 1000
                             for k in (10, 50, 100) for w in ("", "popularity_")}})
    return {"epochs": out}


def test_a_constant_learning_rate_is_drawn_from_zero_and_named():
    fig = plots.learning_rate(epochs())
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == 0 and ax.get_ylim()[1] >= 0.015  # not 0.0096..0.0104
    assert "constant 0.01" in ax.get_title()


def test_a_changing_learning_rate_keeps_matplotlibs_axis():
    ax = plots.learning_rate(epochs(rates=(0.01, 0.005, 0.001))).axes[0]
    assert ax.get_ylim()[0] > 0 and "constant" not in ax.get_title()


def test_the_clip_axis_fits_the_highest_share():
    ax = plots.clip_rate(epochs()).axes[0]
    assert abs(ax.get_ylim()[1] - 0.08 * 1.3) < 1e-9  # 8% fills most of the panel, not 0-1


def test_gradient_norms_sit_on_an_axis_fitted_to_them():
    ax = plots.gradient_norms(epochs(), threshold=1e-7).axes[0]
    low, high = ax.get_ylim()
    assert abs(low - 0.1) < 1e-9 and abs(high - 12.0) < 1e-9  # data 0.2..6, halved/doubled
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("far below" in t for t in labels)  # 1e-7 is named, not drawn at the bottom


def test_each_recall_cutoff_has_its_own_colour():
    ax = plots.recall(epochs()).axes[0]
    colours = {}
    for line in ax.get_lines():
        colours.setdefault(line.get_label().split("@")[1], set()).add(
            matplotlib.colors.to_hex(line.get_color()))
    assert sorted(colours, key=int) == ["10", "50", "100"]
    assert len({c for cs in colours.values() for c in cs}) == 3  # model and popularity share


def test_the_candidate_table_names_each_id(tmp_path):
    path = tmp_path / "products.csv"
    path.write_text("product_id,name,category,price\nP1,Acme drill,tools,142.10\n"
                    "P2,Bolt,,0.20\n", encoding="utf-8")
    run = {"root": str(tmp_path), "spec": {"data": {
        "candidate_id": "product_id", "candidates": {"path": str(path), "id": "product_id"}}}}
    table = data.candidate_table(run)
    assert table["P1"] == {"name": "Acme drill", "category": "tools", "price": "142.10"}
    assert data.describe("P1", table) == "Acme drill · category tools · price 142.10"
    assert data.describe("P2", table) == "Bolt · price 0.20"
    assert data.describe("P9", table) == ""


def test_the_neighbour_example_is_the_most_frequent_candidate():
    vocabs = {"_candidate_id": {"size": 3, "top": ["P7", "P2", "P1"]}}
    assert most_frequent(vocabs, ["P1", "P2", "P7"]) == "P7"
    assert most_frequent({}, ["P1", "P2"]) == "P1"
