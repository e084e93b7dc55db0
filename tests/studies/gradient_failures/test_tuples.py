"""The tuple images and the tuple network, checked against the geometry they should have."""

import numpy as np
import torch

from lookinside.studies.gradient_failures import tuples


def test_each_images_label_is_its_segments_orientation():
    """An image is labelled +1 when its segment's angle is below pi/2, i.e. (rows along cos, columns
    along sin) when its pixels' rows and columns increase together. Measured on 2,000 images: the
    covariance of the lit pixels' rows and columns has the label's sign for all 1,445 images with 6+
    pixels and a covariance of at least 0.5 in size."""
    images, labels, _ = tuples.draw(1000, 2, torch.Generator().manual_seed(3))
    images, labels = images.reshape(-1, 28, 28).numpy(), labels.reshape(-1).numpy()
    agree, counted = 0, 0
    for image, label in zip(images, labels):
        rows, cols = np.nonzero(image)
        if len(rows) < 6:
            continue
        cov = np.cov(rows, cols)
        if abs(cov[0, 1]) < 0.5:        # nearly horizontal or vertical: pixelised angle too close to call
            continue
        counted += 1
        agree += np.sign(cov[0, 1]) == label
    assert counted > 1200 and agree / counted > 0.99, (agree, counted)


def test_images_are_binary_segments_of_the_drawn_lengths_and_tuples_are_independent():
    images, labels, target = tuples.draw(4000, 3, torch.Generator().manual_seed(0))
    assert set(images.unique().tolist()) == {0.0, 1.0}
    lit = images.sum((2, 3))
    # length U[5, 23] -> 2 floor(length / 2) - 1 distinct pixels at most, fewer where clipped at the frame
    assert lit.max() <= 21 and lit.min() >= 0 and 8 < float(lit.mean()) < 12   # measured 9.7
    # labels are balanced and independent across the tuple; the target is balanced
    assert abs(float(labels.mean())) < 0.03 and abs(float((labels[:, 0] * labels[:, 1]).mean())) < 0.05
    assert abs(float(target.mean())) < 0.05


def test_the_cnn_starts_the_same_for_every_k_and_members_differ_by_seed():
    nets = {k: tuples.make_network(k, seed=5) for k in (1, 3)}
    for a, b in zip(nets[1].cnn.parameters(), nets[3].cnn.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(nets[1].score.weight, nets[3].score.weight)
    assert not torch.equal(tuples.make_network(1, seed=6).score.weight, nets[1].score.weight)
    out = nets[3](torch.zeros(2, 3, 28, 28))
    assert out.shape == (2, 4)
