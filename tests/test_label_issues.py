"""Label issues (labelmeta.label_issues): the rule in closed form, its precision–recall figures against
scikit-learn and a direct count, the CSV, and what a real run writes, prints and draws."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from labelmeta import Config, LabelIssues, find_label_issues, fit, fit_learner, read_label_issues
from labelmeta.label_issues import issues_path

TINY = Config(dataset="digits", model="mlp", noise_rate=0.4, meta_per_class=5, meta_batch_size=50, epochs=3,
              warmup_epochs=1, progress=False)


def test_the_rule_in_closed_form():
    """Three samples, two classes: learned labels only, then with weights (zero at most visits is a flag)."""
    annotated = torch.tensor([0, 1, 1])
    q = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6]])
    found = find_label_issues(annotated, q, true=torch.tensor([0, 0, 0]))
    assert torch.allclose(found.score, torch.tensor([0.1, 0.7, 0.4], dtype=torch.float64))
    assert found.suggested.tolist() == [0, 0, 1] and found.flagged.tolist() == [False, True, False]
    assert torch.allclose(found.suggested_probability, torch.tensor([0.9, 0.7, 0.6], dtype=torch.float64))
    assert found.ranking().tolist() == [1, 2, 0]
    weighted = find_label_issues(annotated, q, kept=torch.tensor([1.0, 0.5, 0.25]), true=torch.tensor([0, 0, 0]))
    # trust = mean(q[annotated], kept): 0.95, 0.4, 0.425; kept 0.5 is not most visits rejected, 0.25 is
    assert torch.allclose(weighted.score, torch.tensor([0.05, 0.6, 0.575], dtype=torch.float64))
    assert weighted.flagged.tolist() == [False, True, True]
    stats = weighted.stats()
    assert (stats.precision, stats.recall, stats.flagged, stats.corrupted) == (1.0, 1.0, 2, 2)
    assert stats.f1 == 1.0 and stats.average_precision == 1.0 and stats.false_negative_rate_at_budget == 0.0
    # with the model's probabilities too (a run that learns labels): trust = mean(q[y], p[y], kept)
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    both = find_label_issues(annotated, q, kept=torch.tensor([1.0, 0.5, 0.25]), true=torch.tensor([0, 0, 0]),
                             probabilities=p)
    assert torch.allclose(both.score, 1 - torch.tensor([2.5, 1.3, 1.65], dtype=torch.float64) / 3)
    assert both.ranking().tolist() == [1, 2, 0] and both.suggested.tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"probabilities must be \(3, 2\) like the distribution, got \(2, 2\)"):
        find_label_issues(annotated, q, probabilities=p[:2])


def test_ties_of_the_weight_history_are_broken_by_the_labels():
    """Samples rejected at every visit (kept 0) rank by how little their label and the model trust the annotation."""
    annotated = torch.zeros(4, dtype=torch.long)
    q = torch.tensor([[0.3, 0.7], [0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
    p = torch.tensor([[0.4, 0.6], [0.05, 0.95], [0.3, 0.7], [0.8, 0.2]])
    found = find_label_issues(annotated, q, kept=torch.tensor([0.0, 0.0, 0.0, 1.0]), probabilities=p)
    assert found.ranking().tolist() == [1, 2, 0, 3]
    assert len(torch.unique(found.score)) == 4


def test_false_negative_rate_at_a_budget_of_the_noise_rate_by_direct_count():
    gen = torch.Generator().manual_seed(3)
    n, c = 300, 4
    annotated = torch.randint(c, (n,), generator=gen)
    true = torch.where(torch.rand(n, generator=gen) < 0.25, torch.randint(c, (n,), generator=gen), annotated)
    q = torch.softmax(torch.randn(n, c, generator=gen) + 1.5 * torch.nn.functional.one_hot(true, c), 1)
    found = find_label_issues(annotated, q, true=true)
    corrupted = (annotated != true).tolist()
    budget = sum(corrupted)
    # oracle: sort the scores by hand, take as many as there are wrong labels, count the wrong ones left out
    order = sorted(range(n), key=lambda i: (-float(found.score[i]), i))
    caught = sum(corrupted[i] for i in order[:budget])
    assert found.stats().false_negative_rate_at_budget == pytest.approx(1 - caught / budget)
    assert 0 < found.stats().false_negative_rate_at_budget < 1


def test_precision_recall_against_scikit_learn_and_a_direct_count():
    from sklearn.metrics import average_precision_score

    gen = torch.Generator().manual_seed(0)
    n, c = 400, 5
    annotated = torch.randint(c, (n,), generator=gen)
    true = torch.where(torch.rand(n, generator=gen) < 0.3, torch.randint(c, (n,), generator=gen), annotated)
    logits = torch.randn(n, c, generator=gen) + 2 * torch.nn.functional.one_hot(true, c)
    q = torch.softmax(logits.round(decimals=1), 1)  # rounding makes ties, which a threshold takes whole
    found = find_label_issues(annotated, q, kept=(torch.rand(n, generator=gen) * 4).round() / 4, true=true)
    corrupted = (annotated != true).numpy()
    precision, recall, thresholds = found.precision_recall()
    for p, r, t in zip(precision.tolist(), recall.tolist(), thresholds.tolist()):
        taken = found.score >= t
        hits = (taken & torch.from_numpy(corrupted)).sum().item()
        assert p == pytest.approx(hits / taken.sum().item()) and r == pytest.approx(hits / corrupted.sum())
    assert len(thresholds) == len(torch.unique(found.score))
    stats = found.stats()
    assert stats.average_precision == pytest.approx(average_precision_score(corrupted, found.score.numpy()), abs=1e-12)
    hits = (found.flagged.numpy() & corrupted).sum()
    assert stats.f1 == pytest.approx(2 * hits / (found.flagged.sum().item() + corrupted.sum()))


def test_nothing_corrupted_or_nothing_flagged_gives_nan_not_a_crash():
    annotated = torch.tensor([0, 1])
    clean = find_label_issues(annotated, torch.tensor([[0.8, 0.2], [0.3, 0.7]]), true=annotated).stats()
    assert math.isnan(clean.recall) and math.isnan(clean.f1) and math.isnan(clean.average_precision)
    assert clean.precision != clean.precision and clean.flagged == 0
    unknown = find_label_issues(annotated, torch.tensor([[0.8, 0.2], [0.3, 0.7]]))
    with pytest.raises(ValueError, match="truth of these labels is unknown"):
        unknown.stats()


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"distribution must be \[N=3, C\], got \(2, 2\)"):
        find_label_issues(torch.tensor([0, 1, 1]), torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match=r"kept must be \[N=2\] shares in \[0, 1\], got shape \(2,\) and values in \[-1, 1\]"):
        find_label_issues(torch.tensor([0, 1]), torch.full((2, 2), 0.5), kept=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="kept must be"):
        find_label_issues(torch.tensor([0, 1]), torch.full((2, 2), 0.5), kept=torch.tensor([1.0, 1.5]))
    with pytest.raises(ValueError, match="suggested has shape"):
        LabelIssues(score=torch.zeros(3), suggested=torch.zeros(2), suggested_probability=torch.zeros(3),
                    annotated=torch.zeros(3), flagged=torch.zeros(3, dtype=torch.bool))


def test_csv_round_trip_and_errors(tmp_path):
    annotated = torch.tensor([0, 1, 1, 2])
    q = torch.tensor([[0.5, 0.25, 0.25], [0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    for true in (torch.tensor([0, 0, 1, 1]), None):
        found = find_label_issues(annotated, q, kept=torch.tensor([1.0, 1.0, 0.0, 1.0]), true=true)
        found.to_csv(tmp_path / "a.csv")
        back = LabelIssues.from_csv(tmp_path / "a.csv")
        for name in ("suggested", "annotated", "flagged"):
            assert torch.equal(getattr(back, name), getattr(found, name))
        assert torch.allclose(back.score.double(), found.score, atol=1e-6)
        assert (back.true is None) == (true is None)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[1].split(",")[:2] == ["1", "2"]  # most suspect first: the sample always rejected
    with pytest.raises(ValueError, match="does not exist"):
        LabelIssues.from_csv(tmp_path / "missing.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a label-issues CSV"):
        LabelIssues.from_csv(tmp_path / "bad.csv")
    (tmp_path / "short.csv").write_text(lines[0] + "\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match="malformed row"):
        LabelIssues.from_csv(tmp_path / "short.csv")


def test_a_run_writes_its_issues_from_its_learned_labels_and_weights(tmp_path):
    """The previous default learns labels and weights: the CSV's suggestions are its learned hard labels, a
    sample whose weight was zero at most of its visits (counted here from every step) is a flag, and
    the results carry the same figures."""
    from labelmeta.hooks import RunHook

    class Visits(RunHook):
        def __init__(self):
            self.weighed, self.rejected = {}, {}

        def after_step(self, run, stats):
            if stats.sample_weights is not None:
                for i, w in zip(stats.indices.tolist(), stats.sample_weights.tolist()):
                    self.weighed[i] = self.weighed.get(i, 0) + 1
                    self.rejected[i] = self.rejected.get(i, 0) + (w == 0)

    output, visits = tmp_path / "run.json", Visits()
    # the previous default (detect-correct's own count of the visits is tests/test_detect_correct.py's)
    learner, results = fit_learner(TINY.replace(labels="per-sample", output=str(output)), hooks=[visits])
    found = read_label_issues(output)
    assert issues_path(output) == tmp_path / "run.issues.csv"
    assert len(found) == learner.labels.num_samples
    assert torch.equal(found.annotated, learner.labels.targets.cpu())
    assert torch.equal(found.suggested, learner.labels.hard_labels().cpu())
    kept = torch.tensor([1 - visits.rejected.get(i, 0) / visits.weighed[i] if i in visits.weighed else 1.0
                         for i in range(len(found))], dtype=torch.float64)
    assert set(visits.weighed) == set(range(len(found)))  # two meta epochs visit every sample
    table = learner.labels.table().detach().double()
    from labelmeta.build import splits_for
    from labelmeta.data import loader
    from labelmeta.metrics import predict

    logits, _ = predict(learner.model, loader(splits_for(TINY.replace(labels="per-sample")).train, 64, shuffle=False))
    probabilities = torch.softmax(logits.double(), 1)
    trust = (table.gather(1, found.annotated[:, None])[:, 0] + probabilities.gather(1, found.annotated[:, None])[:, 0]
             + kept) / 3
    assert torch.allclose(found.score.double(), 1 - trust, atol=1e-5)
    assert torch.equal(found.flagged, (found.suggested != found.annotated) | (kept < 0.5))
    assert bool(found.flagged.any()) and bool((found.flagged & (found.suggested == found.annotated)).any())
    stats = found.stats()
    assert results.detect_f1 == pytest.approx(stats.f1, abs=1e-6)
    assert results.detect_average_precision == pytest.approx(stats.average_precision, abs=1e-4)
    assert results.detect_precision == pytest.approx(results.history[-1].detect_precision)


def test_a_run_without_learned_labels_reports_the_models_disagreement(tmp_path):
    from labelmeta.build import splits_for
    from labelmeta.data import loader
    from labelmeta.metrics import predict

    config = TINY.replace(labels="one-hot", strategy="none", output=str(tmp_path / "ce.json"))
    learner, results = fit_learner(config)
    found = read_label_issues(config.output)
    splits = splits_for(config)
    logits, annotated = predict(learner.model, loader(splits.train, 64, shuffle=False))
    assert torch.equal(found.annotated, annotated) and torch.equal(found.suggested, logits.argmax(1))
    assert torch.equal(found.flagged, logits.argmax(1) != annotated)
    assert torch.allclose(found.score.double(), 1 - torch.softmax(logits.double(), 1).gather(1, annotated[:, None])[:, 0],
                          atol=1e-5)
    assert results.detect_precision == pytest.approx(found.stats().precision)
    assert results.history[-1].detect_precision is None  # epochs record no model pass over the training set


def test_cli_and_plot(tmp_path, capsys):
    from labelmeta.cli import main

    paths = []
    for name, overrides in (("default", {}), ("ce", dict(labels="one-hot", strategy="none"))):
        paths.append(str(tmp_path / f"{name}.json"))
        fit(TINY.replace(output=paths[-1], epochs=2, **overrides))
    assert main(["issues", paths[0], "--top", "5"]) == 0
    out = capsys.readouterr().out
    stats = read_label_issues(paths[0]).stats()
    assert f"F1 {stats.f1:.3f}" in out and len([line for line in out.splitlines() if line[:4].strip().isdigit()]) == 5
    assert main(["plot", *paths, "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "label_issues.png").stat().st_size > 0
    capsys.readouterr()
    assert main(["issues", str(tmp_path / "nothing.json")]) != 0
    assert "nothing.issues.csv' does not exist" in capsys.readouterr().err


def test_an_issues_csv_written_before_source_indices_and_names_reads(tmp_path):
    """The CSVs of earlier versions (eight columns) read; today's add each sample's source index and the
    class names, and read back the same."""
    from labelmeta.label_issues import COLUMNS_BEFORE_ISSUE_37

    issues = find_label_issues(torch.tensor([0, 1, 1]), torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]]),
                               true=torch.tensor([0, 0, 1]), source_index=torch.tensor([7, 3, 5]))
    issues.to_csv(tmp_path / "new.csv", class_names=["cat", "dog"])
    with open(tmp_path / "new.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][1:] == ["1", "1", "0", "0.8", "0.8", "1", "0", "3", "dog", "cat", ""]  # the most suspect first
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as f:
        csv.writer(f).writerows([list(COLUMNS_BEFORE_ISSUE_37)] + [r[:8] for r in rows[1:]])
    back, before = LabelIssues.from_csv(tmp_path / "new.csv"), LabelIssues.from_csv(old)
    assert torch.equal(back.source_index, torch.tensor([7, 3, 5])) and before.source_index is None
    for read in (back, before):
        assert torch.equal(read.annotated, issues.annotated) and torch.equal(read.true, issues.true)
