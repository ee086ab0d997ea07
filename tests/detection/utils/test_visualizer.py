"""The demo's Visualizer: labels inside the image, low scores not drawn, input untouched."""
import numpy as np


def test_visualizer_draws_labels_inside_image():
    from detection.utils.visualizer import Visualizer, class_color

    img = np.zeros((100, 120, 3), np.uint8)
    vis = Visualizer(["circle", "square"], score_threshold=0.5)
    preds = {"boxes": np.array([[0, 0, 50, 40], [60, 50, 110, 95], [5, 5, 20, 20]]),
             "scores": np.array([0.9, 0.8, 0.1]), "labels": np.array([0, 1, 0])}
    preds["boxes"][2] = [5, 55, 40, 90]
    out = vis.draw(img, preds)
    assert out is not img and not img.any()  # input untouched
    assert vis.count(preds) == 2
    b, g, r = (int(x) for x in out[0, 1])  # box at the top edge: label drawn inside, filled
    assert (r, g, b) == class_color(0)
    assert out[50:96, 60:111].any() and not out[50:96, 0:45].any()  # low score not drawn
    assert vis.draw(img, {"boxes": np.zeros((0, 4))}).shape == img.shape
