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
