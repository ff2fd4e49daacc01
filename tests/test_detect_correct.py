"""detect-correct labels (labelmeta.detect_correct) and the meta-gradient evidence (labelmeta.evidence),
against hand counts, closed forms and plain autograd."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import C, make_data, make_model
from labelmeta import Config, Learner, fit_learner, make_label_optimizer, make_labels, make_loss
from labelmeta.evidence import meta_evidence

ANNOTATED = torch.tensor([0, 1, 2, 0, 1])


def _observed(threshold=0.6, epochs=2, detect_fraction=0.5):
    labels = make_labels("detect-correct", ANNOTATED, 3, threshold=threshold, detect_fraction=detect_fraction)
    labels.set_epochs(epochs)
    logits = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.5, 0.4], [0.0, 1.0, 0.0]])
    labels.observe(torch.arange(5), logits)
    return labels, logits


def test_rejection_soft_targets_and_hard_labels_by_hand():
    labels, logits = _observed()
    labels.observe_weights(torch.arange(5), torch.tensor([0.0, 0.0, 0.3, 0.0, 0.2]))
    assert labels.rejected().tolist() == [True, True, False, True, False]
    assert labels.kept().tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    with torch.no_grad():
        labels.logits[1] = torch.tensor([0.0, 0.0, 2.0])
    # oracle: the running prediction after one visit from uniform, momentum 0.7
    e = 0.7 / 3 + 0.3 * torch.softmax(logits, 1)
    learned = torch.softmax(e.log() + labels.logits.detach(), 1)
    expected = torch.where(torch.tensor([True, True, False, True, False])[:, None], learned, F.one_hot(ANNOTATED, 3).float())
    assert torch.allclose(labels(torch.arange(5)), expected, atol=1e-6)
    # a rejected sample's hard label leaves its annotation only at probability >= threshold (0.6)
    top_p, top = learned.max(1)
    hard = [int(top[i]) if i in (0, 1, 3) and top_p[i] >= 0.6 else int(ANNOTATED[i]) for i in range(5)]
    assert labels.hard_labels().tolist() == hard
    assert hard != ANNOTATED.tolist() and hard[3] == 0  # sample 3's learned label is not confident


def test_weights_count_only_on_the_annotation_and_not_before_detection_ends():
    labels, _ = _observed(epochs=10)  # 5 of the 25 samples the detection phase (half of 10 epochs) observes
    labels.observe_weights(torch.arange(5), torch.zeros(5))
    assert not labels.detected() and not bool(labels.rejected().any())
    assert torch.equal(labels(torch.arange(5)), F.one_hot(ANNOTATED, 3).float())
    done, _ = _observed()
    done.observe_weights(torch.arange(5), torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))
    done.observe_weights(torch.arange(5), torch.tensor([1.0, 0.0, 1.0, 1.0, 1.0]))  # sample 0 is rejected: not counted
    assert done.visits.tolist() == [1, 2, 2, 2, 2] and done.rejections.tolist() == [1, 1, 0, 0, 0]
    assert done.rejected().tolist() == [True, False, False, False, False]  # 1 of 2 is not most visits


def test_the_meta_gradient_reaches_only_rejected_rows():
    labels, _ = _observed()
    labels.observe_weights(torch.arange(5), torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0]))
    (labels(torch.arange(5)) * torch.randn(5, 3)).sum().backward()
    moved = labels.logits.grad.abs().sum(1) > 0
    assert moved.tolist() == [True, False, True, False, False]


def test_plain_weights_keep_the_verdict_so_far():
    labels, _ = _observed(epochs=10)  # still detecting: doubted samples get no weight in a plain step
    assert labels.plain_weights(torch.arange(5)) is None
    labels.observe_weights(torch.arange(5), torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0]))
    assert labels.plain_weights(torch.arange(5)).tolist() == [0.0, 1.0, 0.0, 1.0, 1.0]
    done, _ = _observed(threshold=0.5)
    done.observe_weights(torch.arange(5), torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0]))
    with torch.no_grad():
        done.logits[0] = torch.tensor([0.0, 5.0, 0.0])  # confident: back in training with its learned label
    assert done.plain_weights(torch.arange(5)).tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]


def _learner(labels):
    model = make_model("mlp")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return Learner(model, opt, labels, "one-step-reweight", make_label_optimizer("mirror", labels.param_groups(), 0.5))


def test_the_learner_shows_the_labels_its_meta_weights_and_a_plain_step_uses_the_verdict():
    targets, batch, meta = make_data()
    labels = make_labels("detect-correct", targets, C)
    labels.set_epochs(100)  # still detecting: every sample trains on its annotation
    learner = _learner(labels)
    start = make_model("mlp")
    stats = learner.step(batch, meta)
    zero = (stats.sample_weights == 0).double()
    # the meta step's model step weights every helpful sample the same ("binary"): oracle, a torch.optim step
    # from the same start on the one-hot annotations with those weights
    start_opt = torch.optim.SGD(start.parameters(), lr=0.1)
    helpful = (stats.sample_weights > 0).float()
    make_loss("ce")(start(batch[0]), F.one_hot(batch[1], C).float(), helpful / helpful.sum(), batch[1]).backward()
    start_opt.step()
    for a, b in zip(learner.model.parameters(), start.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-7)
    assert len(set(stats.sample_weights[stats.sample_weights > 0].tolist())) > 1  # the strategy's own are not
    assert torch.equal(labels.visits[batch[2]], torch.ones(len(batch[2])))
    assert torch.equal(labels.rejections[batch[2]], zero)
    # a step without a meta batch: oracle, a twin model's torch.optim step on the verdict's weighted loss
    twin = make_model("mlp")
    with torch.no_grad():
        for a, b in zip(twin.parameters(), learner.model.parameters()):
            a.copy_(b)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    keep = 1 - zero
    loss = make_loss("ce")(twin(batch[0]), F.one_hot(batch[1], C).float(), keep / keep.sum(), batch[1])
    loss.backward()
    twin_opt.step()
    assert bool(zero.any()) and bool(keep.any())
    plain = learner.step(batch)
    assert plain.sample_weights is None  # a plain step's weights are no meta-gradient verdict: not counted
    for a, b in zip(learner.model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(labels.visits[batch[2]], torch.ones(len(batch[2])))


def test_a_loop_that_does_not_tell_the_run_length_is_warned():
    labels = make_labels("detect-correct", ANNOTATED, 3)
    with pytest.warns(UserWarning, match=r"not told the run's length \(labels.set_epochs"):
        labels.observe_weights(torch.arange(5), torch.ones(5))


def test_state_dict_round_trip():
    labels, _ = _observed()
    labels.observe_weights(torch.arange(5), torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0]))
    fresh = make_labels("detect-correct", ANNOTATED, 3, threshold=0.6, detect_fraction=0.5)
    fresh.set_epochs(2)
    fresh.load_state_dict(labels.state_dict())
    assert torch.equal(fresh.rejected(), labels.rejected()) and torch.equal(fresh(torch.arange(5)), labels(torch.arange(5)))


def test_a_run_counts_its_figures_without_the_clean_samples_it_trains_on(tmp_path):
    """meta_in_train adds the clean set to the training labels: the corrected and broken shares and the
    detection figures are over the annotations a method judges (oracle: a direct count)."""
    from labelmeta.build import splits_for

    config = Config(dataset="digits", model="mlp", meta_per_class=5, meta_batch_size=50, batch_size=64, epochs=4,
                    warmup_epochs=1, labels="detect-correct", meta_in_train=True, progress=False,
                    label_options=dict(detect_fraction=0.5, threshold=0.0), output=str(tmp_path / "run.json"))
    learner, results = fit_learner(config)
    labels = splits_for(config).labels
    judged = ~labels.trusted
    assert int(labels.trusted.sum()) == 50 and bool(labels.trusted[-50:].all())
    hard = learner.labels.hard_labels()[judged]
    noisy, true = labels.noisy[judged], labels.true[judged]
    corrupted = noisy != true
    assert results.corrected == pytest.approx((hard[corrupted] == true[corrupted]).double().mean().item())
    assert results.clean_broken == pytest.approx((hard[~corrupted] != true[~corrupted]).double().mean().item())
    from labelmeta import read_label_issues

    issues = read_label_issues(config.output)
    assert results.detect_f1 == pytest.approx(issues.subset(judged).stats().f1)
    flagged = issues.flagged.nonzero().flatten()
    assert len(flagged) and bool((issues.evidence[flagged] >= 0).any(1).all())  # every flag names clean samples
    assert bool((issues.evidence[~issues.flagged] == -1).all())
    # what a reviewer reads: no tied scores among the most suspect, the correction as the suggestion
    top = issues.ranking()[:50]
    assert len(torch.unique(issues.score[top])) == 50 and bool(issues.flagged[top].all())
    moved = learner.labels.hard_labels() != labels.noisy
    assert bool(moved.any()) and torch.equal(issues.suggested[moved], learner.labels.hard_labels()[moved])


# --- evidence ----------------------------------------------------------------------------------------------

def _autograd_gradients(model, x, y, params):
    rows = []
    for xi, yi in zip(x, y):
        grads = torch.autograd.grad(F.cross_entropy(model(xi[None]), yi[None]), params)
        rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("last_layer", [False, True])
def test_evidence_against_per_sample_autograd(monkeypatch, last_layer):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(7, 6, dtype=torch.float64), torch.randint(3, (7,))
    mx, my = torch.randn(9, 6, dtype=torch.float64), torch.randint(3, (9,))
    if last_layer:
        import labelmeta.evidence as evidence

        monkeypatch.setattr(evidence, "MAX_FLOATS", 9 * 20)  # 9 × 53 parameters do not fit: the head's do
    params = list(model[2].parameters()) if last_layer else list(model.parameters())
    dots = _autograd_gradients(model, x, y, params) @ _autograd_gradients(model, mx, my, params).T
    samples = [(x[:4], y[:4], torch.arange(4)), (x[4:], y[4:], torch.arange(4, 7))]
    meta = [(mx[:5], my[:5], torch.arange(5)), (mx[5:], my[5:], torch.arange(5, 9))]
    found, positions, products, whole = meta_evidence(model, samples, meta, k=3)
    assert whole is not last_layer and found.tolist() == list(range(7))
    expected = torch.topk(dots, 3, dim=1, largest=False)
    assert torch.allclose(products, expected.values, rtol=1e-10, atol=1e-12)
    assert torch.equal(positions, torch.where(expected.values < 0, expected.indices, torch.full_like(expected.indices, -1)))


def test_evidence_decomposes_the_reweighting_hypergradient():
    """dL_meta/dw_i at w = 0 after one SGD step of length lr equals -(lr / M) times the sum of sample i's products
    with every meta sample (oracle: autograd through a hand-written step)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randint(3, (4,))
    mx, my = torch.randn(6, 6, dtype=torch.float64), torch.randint(3, (6,))
    lr = 0.3
    w = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    inner = (w * F.cross_entropy(model(x), y, reduction="none")).sum()
    step = torch.autograd.grad(inner, params, create_graph=True)
    moved = {n: p - lr * g for n, p, g in zip(names, params, step)}
    meta_loss = F.cross_entropy(torch.func.functional_call(model, moved, (mx,)), my)
    hypergradient = torch.autograd.grad(meta_loss, w)[0]
    _, _, products, _ = meta_evidence(model, [(x, y, torch.arange(4))], [(mx, my, torch.arange(6))], k=6)
    assert torch.allclose(-lr / 6 * products.sum(1), hypergradient, rtol=1e-10)
