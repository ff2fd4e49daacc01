"""``labelmeta plot``: figures of real runs, read back from the PNG files; the label matrix taken
from the run's checkpoint is the trained learner's own."""
from __future__ import annotations

import json

import matplotlib.image
import torch

from labelmeta import Config
from labelmeta.cli import main
from labelmeta.plots import label_matrix_from_checkpoint, load_run
from labelmeta.runner import fit_learner

TINY = Config(dataset_options=dict(num_samples=1000), meta_per_class=5, meta_batch_size=20, epochs=2,
              warmup_epochs=1, progress=False)


def test_plot_writes_curves_and_the_label_matrix(tmp_path, capsys):
    per_class = TINY.replace(labels="per-class", strategy="one-step", output=str(tmp_path / "per_class.json"),
                             checkpoint=str(tmp_path / "per_class.pt"))
    learner, _ = fit_learner(per_class)
    fit_learner(TINY.replace(labels="one-hot", strategy="none", output=str(tmp_path / "plain.json")))

    assert main(["plot", str(tmp_path / "per_class.json"), str(tmp_path / "plain.json"),
                 "--out", str(tmp_path / "figs")]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "figs" / name) for name in ("curves.png", "label_issues.png", "per_class_health.png",
                                                                  "per_class_label_matrix.png", "plain_health.png",
                                                                  "plain_evidence.png")]
    for path in written:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and min(image.shape[:2]) > 300 and image.std() > 0  # a drawn figure
    # the matrix the figure shows is the trained learner's: stored in the results, and in the checkpoint
    run = load_run(tmp_path / "per_class.json")
    trained = learner.labels.similarity().detach()
    torch.testing.assert_close(torch.tensor(run.label_matrix, dtype=trained.dtype), trained, rtol=0, atol=0)
    torch.testing.assert_close(label_matrix_from_checkpoint(per_class.checkpoint, run), trained, rtol=0, atol=0)
    assert load_run(tmp_path / "plain.json").label_matrix is None  # one-hot labels have none
    # results written before the matrix was stored: it is read from the run's checkpoint
    data = json.loads((tmp_path / "per_class.json").read_text())
    del data["label_matrix"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert main(["plot", str(tmp_path / "old.json"), "--out", str(tmp_path / "old")]) == 0
    assert (tmp_path / "old" / "old_label_matrix.png").exists()


def test_plot_bad_input_is_a_clear_error(tmp_path, capsys):
    not_a_run = tmp_path / "notes.json"
    not_a_run.write_text(json.dumps({"hello": 1}))
    assert main(["plot", str(tmp_path / "missing.json")]) == 2
    assert "missing.json' does not exist" in capsys.readouterr().err
    assert main(["plot", str(not_a_run), "--out", str(tmp_path)]) == 2
    assert "notes.json' is not the JSON of a labelmeta run" in capsys.readouterr().err
    assert main(["plot", str(not_a_run), str(not_a_run), "--names", "a", "--out", str(tmp_path)]) == 2
    assert "1 names for 2 runs" in capsys.readouterr().err
