"""The blob generator: shapes, determinism, the recipe's parameters and steps, and labels that
split each split's scores, the scores recomputed here independently of the module."""

import numpy as np
import pytest

from lookinside.studies.tensor_convnets import blobs

N_TRAIN, N_TEST = 600, 300


def closedness(image):
    """|I| / |closing(I)| with a 4-connected cross, by shifts: I padded by one 0 pixel, outside is 0."""
    p = np.pad(image.astype(bool), 1)

    def shifted(a):
        z = np.zeros_like(a)
        out = []
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            s = z.copy()
            s[max(dr, 0):a.shape[0] + min(dr, 0), max(dc, 0):a.shape[1] + min(dc, 0)] = \
                a[max(-dr, 0):a.shape[0] + min(-dr, 0), max(-dc, 0):a.shape[1] + min(-dc, 0)]
            out.append(s)
        return out

    dilated = p | np.logical_or.reduce(shifted(p))
    closed = dilated & np.logical_and.reduce(shifted(dilated))
    return image.sum() / closed[1:-1, 1:-1].sum()


def symmetry(image):
    """|T & fliplr(T)| / |T| by a pixel loop, T the 16 px quadrant holding the blob, else the image."""
    quadrants = [(r, c) for r in (0, 16) for c in (0, 16) if image[r:r + 16, c:c + 16].any()]
    r0, c0, t = (*quadrants[0], 16) if len(quadrants) == 1 else (0, 0, 32)
    both = total = 0
    for r in range(r0, r0 + t):
        for c in range(c0, c0 + t):
            if image[r, c]:
                total += 1
                both += bool(image[r, c0 + t - 1 - (c - c0)])
    return both / total


SCORE = {"closedness": closedness, "symmetry": symmetry}


@pytest.mark.parametrize("task", blobs.TASKS)
def test_shapes_dtypes_values_and_balance(task):
    x, y, xt, yt = blobs.generate(task, N_TRAIN, N_TEST, 0)
    m, mt = int(N_TRAIN * 0.4), int(N_TEST * 0.4)
    assert x.shape == (2 * m, 32, 32) and y.shape == (2 * m,)
    assert xt.shape == (2 * mt, 32, 32) and yt.shape == (2 * mt,)
    assert x.dtype == xt.dtype == np.uint8 and y.dtype == yt.dtype == np.int64
    assert set(np.unique(x)) == {0, 1} and set(np.unique(xt)) <= {0, 1}
    assert np.bincount(y).tolist() == [m, m] and np.bincount(yt).tolist() == [mt, mt]
    assert x.any((1, 2)).all() and xt.any((1, 2)).all()          # empty images are redrawn


@pytest.mark.parametrize("task", blobs.TASKS)
def test_independent_scores_separate_the_classes_in_each_split(task):
    for x, y in np.array(blobs.generate(task, N_TRAIN, N_TEST, 0), dtype=object).reshape(2, 2):
        s = np.array([SCORE[task](im) for im in x])
        assert s[y == 1].min() > s[y == 0].max()


def test_labels_are_the_extremes_of_their_own_split():
    data = blobs._dataset(N_TRAIN, N_TEST, 0)
    for task, column in (("closedness", 1), ("symmetry", 2)):
        x, y, xt, yt = blobs.generate(task, N_TRAIN, N_TEST, 0)
        for split, xs, ys in (("train", x, y), ("test", xt, yt)):
            images, scores = data[split][0], data[split][column]
            m = int(len(scores) * 0.4)
            order = np.argsort(scores, kind="stable")
            low, high = np.sort(order[:m]), np.sort(order[-m:])
            np.testing.assert_array_equal(xs[ys == 0], images[low])      # generation order kept
            np.testing.assert_array_equal(xs[ys == 1], images[high])
    # the module's scores agree with the independent ones
    images, cls, sym = data["test"]
    np.testing.assert_allclose(cls[:50], [closedness(im) for im in images[:50]])
    np.testing.assert_allclose(sym[:50], [symmetry(im) for im in images[:50]])


def test_both_tasks_rank_the_same_images():
    x_c, *_ = blobs.generate("closedness", N_TRAIN, N_TEST, 0)
    x_s, *_ = blobs.generate("symmetry", N_TRAIN, N_TEST, 0)
    pool = {im.tobytes() for im in blobs._dataset(N_TRAIN, N_TEST, 0)["train"][0].astype(np.uint8)}
    assert {im.tobytes() for im in x_c} <= pool and {im.tobytes() for im in x_s} <= pool
    assert not np.array_equal(x_c, x_s)


def test_deterministic_for_a_seed_and_different_across_seeds():
    first = [a.copy() for a in blobs.generate("symmetry", 200, 100, 3)]
    blobs.generate.cache_clear()
    blobs._dataset.cache_clear()
    again = blobs.generate("symmetry", 200, 100, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = blobs.generate("symmetry", 200, 100, 4)
    assert not np.array_equal(first[0], other[0])


def test_cache_returns_the_same_read_only_arrays():
    a = blobs.generate("closedness", 100, 50, 0)
    assert blobs.generate("closedness", 100, 50, 0) is a
    for arr in a:
        assert not arr.flags.writeable
    with pytest.raises(ValueError):
        a[0][0, 0, 0] = 1


def test_unknown_task_is_a_one_line_error_naming_the_tasks():
    with pytest.raises(ValueError) as e:
        blobs.generate("closure", 10, 10, 0)
    assert "\n" not in str(e.value) and all(t in str(e.value) for t in blobs.TASKS)
    with pytest.raises(ValueError, match="n_test"):
        blobs.generate("symmetry", 10, -1, 0)


def test_drawn_parameters_follow_the_recipe():
    p = blobs._draw_params(np.random.default_rng(0), 4000)
    assert set(p["semi_b"].tolist()) == set(range(5, 16))            # int(2**U(3.5, 5) / 2)
    assert set(p["tile"].tolist()) == {16, 32} and abs((p["tile"] == 16).mean() - 0.5) < 0.04
    assert (p["row0"] % p["tile"] == 0).all() and (p["row0"] + p["tile"] <= 32).all()
    assert (p["col0"] % p["tile"] == 0).all() and (p["col0"] + p["tile"] <= 32).all()
    small = p["tile"] == 16
    assert len(set(zip(p["row0"][small].tolist(), p["col0"][small].tolist()))) == 4
    assert 0.1 <= p["drop_p"].min() and p["drop_p"].max() < 0.33
    assert 0 <= p["angle"].min() and p["angle"].max() < 180
    assert p["amplitude"].max() < 4 and p["frequency"].max() < 3 * 2 * np.pi / 32
    assert abs(p["symmetric_mask"].mean() - 0.5) < 0.04


def test_drop_masks_are_tile_bound_and_mirror_symmetric_half_the_time():
    p = blobs._draw_params(np.random.default_rng(1), 400)
    images, drop = blobs._render(p)
    assert not (images & drop).any()                                    # dropped pixels are 0
    for k in range(400):
        t, r0, c0 = p["tile"][k], p["row0"][k], p["col0"][k]
        tile = drop[k, r0:r0 + t, c0:c0 + t]
        assert tile.sum() == drop[k].sum()                              # nothing dropped outside the tile
        assert np.array_equal(tile, tile[:, ::-1]) == p["symmetric_mask"][k]
        assert abs(tile.mean() - p["drop_p"][k]) < 0.15
    assert 0.4 < p["symmetric_mask"].mean() < 0.6


def test_ellipse_and_sine_warp_without_rotation_shrinking_or_dropping():
    p = blobs._draw_params(np.random.default_rng(2), 6)
    p["semi_b"] = np.array([5, 9, 15, 15, 12, 7])
    p["amplitude"] = np.array([0, 0, 0, 3.9, 3.9, 2.5])
    p["frequency"] = np.array([0.1, 0.1, 0.1, 0.55, 0.2, 0.4])
    p["angle"] = np.zeros(6)
    p["tile"], p["row0"], p["col0"] = np.full(6, 32), np.zeros(6, int), np.zeros(6, int)
    p["drop_p"] = np.zeros(6)
    images, _ = blobs._render(p)
    yy, xx = np.mgrid[:32, :32]
    for k in range(6):
        b = p["semi_b"][k]
        expected = ((xx - 15.5) / 16) ** 2 + ((yy - 15.5) / b) ** 2 < 1
        for i in range(32):                   # the original's loop: roll column i by int(A sin(f i))
            expected[:, i] = np.roll(expected[:, i], int(p["amplitude"][k] * np.sin(p["frequency"][k] * i)))
        np.testing.assert_array_equal(images[k], expected)
        if p["amplitude"][k] == 0:
            assert images[k].any(1).sum() == 2 * b and images[k].any(0).all()   # height 2b, width 32


@pytest.mark.slow
def test_paper_sizes():
    x, y, xt, yt = blobs.generate("symmetry", 25_000, 5_000, 0)
    assert (len(y), len(yt)) == (20_000, 4_000)
