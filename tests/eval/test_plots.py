import matplotlib.pyplot as plt

from kmm.eval import plots


def test_history_plot_draws_a_metric_only_where_a_stage_logged_it(tmp_path, monkeypatch):
    (tmp_path / "stage1.csv").write_text("epoch,loss,val_loss,val_t2v_r1\n0,2.0,2.1,10\n1,1.5,1.9,20\n")
    (tmp_path / "stage2.csv").write_text("epoch,loss,val_loss\n0,1.2,1.8\n")  # stage 2 logs no R@1
    drawn = {}
    original = plt.Axes.plot

    def spy(ax, x, y, **kwargs):
        drawn[kwargs["label"]] = (list(x), list(y))
        return original(ax, x, y, **kwargs)

    monkeypatch.setattr(plt.Axes, "plot", spy)
    out = plots.plot_history([tmp_path / "stage1.csv", tmp_path / "stage2.csv"], tmp_path / "curves.png")
    assert out.exists()
    assert drawn["loss"] == ([1, 2, 3], [2.0, 1.5, 1.2])
    assert drawn["val_t2v_r1"] == ([1, 2], [10.0, 20.0])


def test_history_plot_has_a_panel_only_for_what_the_run_logged(tmp_path, monkeypatch):
    (tmp_path / "h.csv").write_text("epoch,acc,loss,val_acc,val_loss\n0,0.5,1.0,0.4,1.1\n")  # labels, no captions
    titles = []
    monkeypatch.setattr(plt.Axes, "set_title", lambda ax, title, **kw: titles.append(title))
    plots.plot_history([tmp_path / "h.csv"], tmp_path / "curves.png")
    assert titles == ["loss", "classification accuracy"]


def test_metrics_table_shows_only_what_the_run_has():
    from kmm.eval.evaluate import _markdown

    classification = {"n": 8, "accuracy": 0.875, "macro_f1": 0.8}
    retrieval = {"text_to_video": {"n": 8, "R@1": 50.0, "R@5": 75.0, "R@10": 100.0, "median_rank": 2},
                 "video_to_text": {"n": 8, "R@1": 37.5, "R@5": 75.0, "R@10": 100.0, "median_rank": 2}}  # fmt: skip
    labels_only = _markdown({"test": {"classification": classification}})
    assert labels_only.splitlines()[0] == "| split | n | accuracy | macro F1 |"
    assert labels_only.splitlines()[2] == "| test | 8 | 87.5 | 80.0 |"
    both = _markdown(
        {"val": {"retrieval": retrieval}, "test": {"classification": classification, "retrieval": retrieval}}
    )
    assert "nan" not in both
    assert both.splitlines()[0] == "| split | n | accuracy | macro F1 | t->v R@1 | R@5 | R@10 | MdR | v->t R@1 |"
    assert both.splitlines()[2] == "| val | 8 | - | - | 50.0 | 75.0 | 100.0 | 2 | 37.5 |"
