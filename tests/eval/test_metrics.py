import numpy as np
import pytest

from kmm.eval import metrics


def test_classification_metrics_by_hand():
    # true:  a a a b b c ; pred: a a b b c c
    m = metrics.classification_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # precision a=2/2 b=1/2 c=1/2 ; recall a=2/3 b=1/2 c=1/1
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class"]["c"]["support"] == 1


def test_absent_classes_do_not_dilute_the_macro_average():
    m = metrics.classification_metrics([0, 1], [0, 1], ["a", "b", "never"])
    assert m["macro_f1"] == 1.0


def test_retrieval_ranks_by_hand():
    sim = np.array(
        [
            [0.9, 0.1, 0.0],  # query 0: true item scored highest -> rank 1
            [0.8, 0.5, 0.7],  # query 1: two items above -> rank 3
            [0.1, 0.9, 0.5],  # query 2: one item above -> rank 2
        ]
    )
    assert metrics.ranks(sim).tolist() == [1, 3, 2]
    r = metrics.retrieval_metrics(sim, ks=(1, 2))
    assert r["R@1"] == pytest.approx(100 / 3) and r["R@2"] == pytest.approx(200 / 3)
    assert r["median_rank"] == 2 and r["mean_rank"] == 2


def test_bidirectional_uses_both_axes():
    video = np.eye(3)
    text = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float)  # texts 1 and 2 swapped
    r = metrics.bidirectional_retrieval(video, text, ks=(1,))
    assert r["text_to_video"]["R@1"] == pytest.approx(100 / 3)
    assert r["video_to_text"]["R@1"] == pytest.approx(100 / 3)


def test_group_retrieval_counts_any_clip_of_the_captions_group_by_hand():
    sim = np.array(
        [
            [0.2, 0.9, 0.1, 0.0],  # query 0 (group A): its twin, clip 1, first -> group rank 1 (standard rank 2)
            [0.1, 0.3, 0.8, 0.2],  # query 1 (group A): clip 2 (group B) above the best of A (0.3) -> rank 2
            [0.7, 0.6, 0.4, 0.5],  # query 2 (group B): clips 0, 1 and 3 above -> rank 4 (as standard)
            [0.0, 0.1, 0.2, 0.9],  # query 3 (group C): rank 1
        ]
    )
    groups = np.array([0, 0, 1, 2])
    assert metrics.ranks(sim).tolist() == [2, 2, 4, 1]
    r = metrics.group_retrieval_metrics(sim, groups, ks=(1, 2))
    assert r["R@1"] == pytest.approx(50) and r["R@2"] == pytest.approx(75)
    assert r["median_rank"] == 1.5 and r["mean_rank"] == 2
    assert r["expected_R@1_ceiling"] == pytest.approx(100 * (0.5 + 0.5 + 1 + 1) / 4)
