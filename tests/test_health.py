"""Label health (labelmeta.health): the noise matrices, rates and confused pairs against hand-computed
values and scikit-learn's confusion matrix; ``labelmeta issues --summary`` and the health figure of
``labelmeta plot`` on a real run and on a run whose truth is unknown."""
from __future__ import annotations

import csv
import json
import math

import matplotlib.image
import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from labelmeta.cli import main
from labelmeta.health import ConfusedPair, classes_of_run, format_health, label_health
from labelmeta.label_issues import LabelIssues, issues_path
from labelmeta.plots import plot_label_health
from labelmeta.records import EpochRecord, Results

TINY = ["--data-num-samples", "1000", "--epochs", "2", "--warmup-epochs", "1", "--meta-per-class", "5",
        "--meta-batch-size", "50", "--no-progress"]


def _issues(true: bool = True) -> LabelIssues:
    """Ten samples of three classes; the figures the tests expect are worked out by hand beside them."""
    annotated = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    suggested = [0, 0, 1, 2, 1, 1, 0, 2, 1, 1]
    truth = [0, 1, 1, 0, 1, 1, 0, 2, 2, 1]
    # suggested != annotated, and sample 1 also flagged (its weight was zero at most visits)
    flagged = [0, 1, 1, 1, 0, 0, 1, 0, 1, 1]
    score = [0.1, 0.6, 0.9, 0.8, 0.2, 0.0, 0.7, 0.3, 0.9, 0.5]
    return LabelIssues(score=torch.tensor(score, dtype=torch.float64), suggested=torch.tensor(suggested),
                       suggested_probability=torch.full((10,), 0.9, dtype=torch.float64),
                       annotated=torch.tensor(annotated), flagged=torch.tensor(flagged).bool(),
                       true=torch.tensor(truth) if true else None)


def test_counts_rates_and_pairs_equal_the_hand_computed_ones():
    health = label_health(_issues(), 3, class_names=["cat", "dog", "fox"])
    # rows: annotated; columns: suggested (estimated) / true
    assert health.estimated_counts.tolist() == [[2, 1, 1], [1, 2, 0], [0, 2, 1]]
    assert health.true_counts.tolist() == [[2, 2, 0], [1, 2, 0], [0, 1, 2]]
    assert health.samples.tolist() == [4, 3, 3]
    torch.testing.assert_close(health.estimated_matrix, torch.tensor(
        [[2 / 4, 1 / 4, 1 / 4], [1 / 3, 2 / 3, 0], [0, 2 / 3, 1 / 3]], dtype=torch.float64))
    torch.testing.assert_close(health.true_matrix, torch.tensor(
        [[2 / 4, 2 / 4, 0], [1 / 3, 2 / 3, 0], [0, 1 / 3, 2 / 3]], dtype=torch.float64))
    torch.testing.assert_close(health.estimated_noise_rate, torch.tensor([1 / 2, 1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(health.true_noise_rate, torch.tensor([1 / 2, 1 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(health.flagged_rate, torch.tensor([3 / 4, 1 / 3, 2 / 3], dtype=torch.float64))
    # mean 1 - score per annotated class: (.9+.4+.1+.2)/4, (.8+1+.3)/3, (.7+.1+.5)/3
    torch.testing.assert_close(health.quality, torch.tensor([0.4, 0.7, 1.3 / 3], dtype=torch.float64))
    assert health.overall_estimated_noise == pytest.approx(5 / 10)
    assert health.overall_true_noise == pytest.approx(4 / 10)
    assert health.overall_flagged == pytest.approx(6 / 10)
    assert health.overall_quality == pytest.approx(5.0 / 10)
    assert health.confused_pairs() == [ConfusedPair(2, 1, 2, 1), ConfusedPair(0, 1, 1, 2),
                                       ConfusedPair(0, 2, 1, 0), ConfusedPair(1, 0, 1, 1)]
    assert health.confused_pairs(top=1) == [ConfusedPair(2, 1, 2, 1)]


def test_the_matrices_equal_scikit_learns_confusion_matrices():
    """On random labels of five classes, one of them never annotated (its rates are undefined: nan)."""
    g = torch.Generator().manual_seed(0)
    n, c = 200, 5
    annotated = torch.randint(0, c - 1, (n,), generator=g)
    suggested, true = torch.randint(0, c, (n,), generator=g), torch.randint(0, c, (n,), generator=g)
    issues = LabelIssues(score=torch.rand(n, generator=g, dtype=torch.float64), suggested=suggested,
                         suggested_probability=torch.rand(n, generator=g, dtype=torch.float64),
                         annotated=annotated, flagged=suggested != annotated, true=true)
    health = label_health(issues, c)
    labels = list(range(c))
    assert health.estimated_counts.tolist() == confusion_matrix(annotated, suggested, labels=labels).tolist()
    assert health.true_counts.tolist() == confusion_matrix(annotated, true, labels=labels).tolist()
    assert health.overall_true_noise == pytest.approx(float((annotated != true).double().mean()))
    assert math.isnan(health.estimated_noise_rate[c - 1]) and math.isnan(health.quality[c - 1])
    assert torch.isnan(health.estimated_matrix[c - 1]).all()
    for a in range(c - 1):
        rows = annotated == a
        assert float(health.estimated_noise_rate[a]) == pytest.approx(float((suggested[rows] != a).double().mean()))
        assert float(health.quality[a]) == pytest.approx(float((1 - issues.score[rows]).mean()))
    report = format_health(health)
    assert f"{c - 1:<5}        0           –        –           –        –" in report


def test_the_truth_unknown_gives_no_true_figures():
    health = label_health(_issues(true=False), 3)
    assert health.true_counts is None and health.true_matrix is None and health.true_noise_rate is None
    assert health.overall_true_noise is None
    assert [(p.annotated, p.suggested, p.true_count) for p in health.confused_pairs()] == [
        (2, 1, None), (0, 1, None), (0, 2, None), (1, 0, None)]
    report = format_health(health)
    assert "true" not in report and "estimated noise 50.0%" in report


def test_the_report_shows_the_figures():
    report = format_health(label_health(_issues(), 3, class_names=["cat", "dog", "fox"]))
    assert ("estimated noise 50.0% (suggested label ≠ annotation), flagged 60.0%, true noise 40.0%; "
            "label quality 0.500 (mean 1 − score)") in report
    assert "cat          4       50.0%    75.0%       50.0%    0.400" in report
    assert "fox        dog            2           1" in report  # the most confused pair
    assert "cat     50.0   25.0   25.0" in report and "cat     50.0   50.0    0.0" in report  # the two matrices
    many = format_health(label_health(_issues(), 30))
    assert "30 classes, too many to print" in many


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=2), "suggested label 2 is outside the 2 classes"),
    (dict(num_classes=3, class_names=["a", "b"]), "2 class names for 3 classes"),
    (dict(num_classes=0), "num_classes must be >= 1, got 0"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    issues = _issues()
    if kwargs.get("num_classes") == 2:  # the annotations fit two classes; a suggestion does not
        issues.annotated = issues.annotated.clamp(max=1)
    with pytest.raises(ValueError, match=message):
        label_health(issues, **kwargs)


def test_the_class_count_comes_from_the_label_matrix_else_the_labels():
    issues = _issues()
    assert classes_of_run(None, issues) == (3, None)
    run = Results(config={}, label_matrix=[[1.0 / 5] * 5] * 5)
    assert classes_of_run(run, issues) == (5, None)


def test_the_health_figure_draws_the_matrices_on_one_scale():
    health = label_health(_issues(), 3)
    fig = plot_label_health(health)
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == 2
    for ax, matrix in zip(maps, [health.estimated_matrix, health.true_matrix]):
        shown = np.asarray(ax.images[0].get_array())
        np.testing.assert_allclose(shown, np.log10(np.clip(matrix.numpy(), 1e-4, 1)))
        assert ax.images[0].get_clim() == (-4, 0)
    bars = [ax for ax in fig.axes if ax.patches]
    # per class: the estimated rate, the flagged share, the true rate
    assert [p.get_height() for p in bars[0].patches] == pytest.approx([50, 100 / 3, 200 / 3, 75, 100 / 3, 200 / 3,
                                                                       50, 100 / 3, 100 / 3])
    assert len([ax for ax in plot_label_health(label_health(_issues(true=False), 3)).axes if ax.images]) == 1


def test_summary_and_health_figure_of_a_run_end_to_end(tmp_path, capsys):
    run = tmp_path / "run.json"
    # cross-entropy: the suggested label is the model's prediction, which after two epochs often differs
    assert main(["train", *TINY, "--labels", "one-hot", "--strategy", "none", "--output", str(run)]) == 0
    capsys.readouterr()
    assert main(["issues", str(run), "--summary", "--top", "3"]) == 0
    out = capsys.readouterr().out
    with open(issues_path(run), newline="") as f:
        rows = list(csv.DictReader(f))
    # the figures from the CSV by hand, and the run's own noise
    estimated = sum(r["annotated"] != r["suggested"] for r in rows) / len(rows)
    effective = json.loads(run.read_text())["effective_noise"]
    assert f"label health: {len(rows)} samples, 10 classes" in out
    assert f"estimated noise {100 * estimated:.1f}%" in out and f"true noise {100 * effective:.1f}%" in out
    assert "the 3 most confused pairs" in out and "true noise matrix (rows: annotated, columns: true" in out
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    written = capsys.readouterr().out.split()
    assert str(tmp_path / "figs" / "run_health.png") in written
    image = matplotlib.image.imread(tmp_path / "figs" / "run_health.png")
    assert image.ndim == 3 and min(image.shape[:2]) > 300 and image.std() > 0


def test_summary_and_figure_with_the_truth_unknown(tmp_path, capsys):
    """A user's own labels: the CSV's true column is empty; nothing of the truth is shown."""
    run = tmp_path / "own.json"
    Results.from_history({}, [EpochRecord(1, 0.5, None, 1.0, 0.9, 0.01)]).to_json(run)
    _issues(true=False).to_csv(issues_path(run))
    assert issues_path(run).read_text().splitlines()[1].endswith(",")  # the true column is empty
    assert main(["issues", str(run), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "label health: 10 samples, 3 classes" in out and "true" not in out
    assert main(["plot", str(run), "--out", str(tmp_path / "figs")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "figs" / n) for n in ("curves.png", "own_health.png")]
    # the issues alone, without the run's JSON, are enough for the summary
    run.unlink()
    assert main(["issues", str(run), "--summary"]) == 0
    assert "label health: 10 samples, 3 classes" in capsys.readouterr().out
