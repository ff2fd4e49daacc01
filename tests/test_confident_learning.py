"""The confident-learning baseline (benchmarks/confident_learning.py, through cleanlab): folds, the
wiring of its filter, and its retraining on the kept samples plus the clean meta set."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("cleanlab")

import confident_learning as cl  # noqa: E402  (benchmarks/ is on the test path)
from labelmeta import Config  # noqa: E402
from labelmeta.build import splits_for  # noqa: E402

TINY = Config(dataset="digits", model="mlp", noise_rate=0.4, labels="one-hot", strategy="none", meta_in_train=True,
              meta_per_class=5, epochs=3, progress=False)


def test_folds_partition_the_samples_evenly_and_reproducibly():
    fold = cl.fold_of(103, 5, seed=0)
    assert sorted(torch.bincount(fold).tolist()) == [20, 20, 21, 21, 21]
    assert torch.equal(fold, cl.fold_of(103, 5, seed=0)) and not torch.equal(fold, cl.fold_of(103, 5, seed=1))
    with pytest.raises(ValueError, match=r"folds must be in \[2, 3\], got 4"):
        cl.fold_of(3, 4, seed=0)


def test_the_filter_is_cleanlabs_on_out_of_fold_probabilities_and_the_retraining_drops_its_flags():
    import cleanlab.filter

    results, found = cl.confident_learning(TINY, folds=3)
    splits = splits_for(TINY)
    noisy = len(splits.labels.noisy) - len(splits.meta)
    probabilities = cl.out_of_fold_probabilities(TINY, splits, noisy, folds=3)  # seeded: the same models again
    flags = cleanlab.filter.find_label_issues(splits.labels.noisy[:noisy].numpy(), probabilities.double().numpy(),
                                              n_jobs=1)
    assert torch.equal(found.flagged, torch.from_numpy(flags)) and bool(found.flagged.any())
    assert torch.equal(found.annotated, splits.labels.noisy[:noisy]) and torch.equal(found.true, splits.labels.true[:noisy])
    assert torch.equal(found.suggested, probabilities.argmax(1))
    stats = found.stats()
    assert (results.detect_precision, results.detect_recall, results.detect_f1) == (stats.precision, stats.recall, stats.f1)
    assert results.effective_noise == splits.labels.effective_rate
    # the retrained run saw the kept annotated samples and every clean meta sample
    epoch_steps = -(-(noisy - int(found.flagged.sum()) + len(splits.meta)) // TINY.batch_size)
    assert len(results.history) == TINY.epochs and epoch_steps > 0


def test_the_recipe_needs_the_clean_meta_set_in_training():
    with pytest.raises(ValueError, match="meta_in_train=True and meta_per_class > 0"):
        cl.confident_learning(TINY.replace(meta_in_train=False))
