"""Tests for the 12-bit dataset: the generator, var_u.mat loading and the train/test split."""

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.spatial.transform import Rotation

from lookinside.studies.information_bottleneck.data import (
    BitsDataset,
    DatasetError,
    all_patterns,
    generate_bits_dataset,
    icosahedron_vertices,
    information_bits,
    invariant_score,
    label_probability,
    load_var_u,
    split_indices,
)

# The original label file lies beside the repository (../shared/data/idnns/var_u.mat).
VAR_U = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "idnns" / "var_u.mat"


@pytest.fixture(scope="module")
def generated() -> BitsDataset:
    return generate_bits_dataset(seed=0)


@pytest.fixture(scope="module")
def var_u() -> BitsDataset:
    if not VAR_U.is_file():
        pytest.skip(f"original var_u.mat not found at {VAR_U}")
    return load_var_u(VAR_U)


# --- generator ---------------------------------------------------------------------------


def test_generated_inputs_are_all_patterns_in_counting_order(generated):
    assert generated.x.shape == (4096, 12) and generated.x.dtype == np.uint8
    assert len(np.unique(generated.x, axis=0)) == 4096
    place_values = 1 << np.arange(11, -1, -1)  # most significant bit first
    np.testing.assert_array_equal(generated.x.astype(np.int64) @ place_values, np.arange(4096))
    np.testing.assert_array_equal(generated.x[5], [0] * 9 + [1, 0, 1])


def test_generated_labels_are_binary_and_balanced(generated):
    assert generated.y.shape == (4096,) and generated.y.dtype == np.int64
    assert set(np.unique(generated.y)) <= {0, 1}
    assert abs(generated.y.mean() - 0.5) < 0.05
    assert generated.source == "generated(seed=0)"


def test_generator_is_deterministic_in_seed_and_seed_changes_only_labels():
    a, b, c = (generate_bits_dataset(seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.x, c.x)
    assert not np.array_equal(a.y, c.y)


def test_icosahedron_vertices_are_unit_and_regular():
    points = icosahedron_vertices()
    assert points.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0)
    gram = points @ points.T
    off_diagonal = np.round(gram[~np.eye(12, dtype=bool)], 9)
    # Each vertex: 5 neighbours at +1/sqrt5, 5 at -1/sqrt5, 1 antipode at -1.
    values, counts = np.unique(off_diagonal, return_counts=True)
    np.testing.assert_allclose(values, [-1, -(5**-0.5), 5**-0.5])
    np.testing.assert_array_equal(counts, [12, 60, 60])


def test_score_is_invariant_under_rotations_and_reflections():
    x, points = all_patterns(), icosahedron_vertices()
    score = invariant_score(x, points)
    for seed in range(3):
        rotation = Rotation.random(random_state=seed).as_matrix()
        for transform in (rotation, -rotation):  # -R is a reflection: O(3), not SO(3)
            np.testing.assert_allclose(invariant_score(x, points @ transform.T), score, atol=1e-9)
    np.testing.assert_allclose(
        label_probability(x, points @ rotation.T), label_probability(x), atol=1e-9
    )


def test_relabelling_bits_by_an_icosahedral_symmetry_keeps_the_labels():
    x, points = all_patterns(), icosahedron_vertices()
    # A fifth turn about vertex 0 maps the vertex set onto itself, i.e. permutes the bits.
    turn = Rotation.from_rotvec(2 * np.pi / 5 * points[0]).as_matrix()
    moved = points @ turn.T
    perm = np.argmin(np.linalg.norm(moved[:, None, :] - points[None, :, :], axis=2), axis=1)
    np.testing.assert_allclose(moved, points[perm], atol=1e-9)
    assert sorted(perm) == list(range(12)) and (perm != np.arange(12)).sum() == 10
    # Pattern x' with x'[perm[i]] = x[i] activates the turned points of x.
    permuted = np.zeros_like(x)
    permuted[:, perm] = x
    np.testing.assert_allclose(label_probability(permuted), label_probability(x), atol=1e-9)


def test_label_is_nearly_deterministic_but_not_linear_in_the_bit_count():
    p = label_probability(all_patterns())
    assert p.shape == (4096,) and ((0 <= p) & (p <= 1)).all()
    assert information_bits(p) > 0.9
    # Patterns with the same number of active bits get both labels: geometry matters.
    k = all_patterns().sum(axis=1)
    assert 0.1 < p[k == 6].mean() < 0.9


def test_information_bits_extremes():
    assert information_bits(np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert information_bits(np.full(8, 0.5)) == pytest.approx(0.0)


# --- var_u.mat ---------------------------------------------------------------------------


def test_var_u_loads_with_the_generators_inputs(var_u, generated):
    assert var_u.source == str(VAR_U)
    assert var_u.x.dtype == np.uint8 and var_u.y.dtype == np.int64
    assert len(np.unique(var_u.x, axis=0)) == 4096
    np.testing.assert_array_equal(var_u.x, generated.x)


def test_generator_matches_var_u_statistics(var_u, generated):
    assert abs(var_u.y.mean() - generated.y.mean()) < 0.05
    # Stronger: the noiseless labels coincide with the original's at every input, and
    # sampling flips only the few labels whose f lies nearest theta.
    noiseless = (label_probability(generated.x) > 0.5).astype(np.int64)
    np.testing.assert_array_equal(noiseless, var_u.y)
    assert (generated.y == var_u.y).mean() > 0.99


def test_load_var_u_restores_counting_order(var_u, tmp_path):
    order = np.random.default_rng(0).permutation(4096)
    path = tmp_path / "shuffled.mat"
    scipy.io.savemat(path, {"F": var_u.x[order], "y": var_u.y[order][None, :].astype(np.uint8)})
    loaded = load_var_u(path)
    np.testing.assert_array_equal(loaded.x, var_u.x)
    np.testing.assert_array_equal(loaded.y, var_u.y)


# --- bad inputs ----------------------------------------------------------------------------


def _save(path, **fields):
    scipy.io.savemat(path, fields)
    return path


def _good_fields():
    return {"F": all_patterns(), "y": np.zeros((1, 4096), dtype=np.uint8)}


def test_well_formed_file_loads(tmp_path):
    loaded = load_var_u(_save(tmp_path / "ok.mat", **_good_fields()))
    assert loaded.y.shape == (4096,) and loaded.source == str(tmp_path / "ok.mat")


def _bad_files(tmp_path):
    text = tmp_path / "text.mat"
    text.write_text("this is not a MATLAB file\n")
    good = _good_fields()
    duplicated = all_patterns()
    duplicated[1] = duplicated[0]
    return {
        "missing": (tmp_path / "absent.mat", "no such file"),
        "directory": (tmp_path, "not a file"),
        "text": (text, "not a readable"),
        "no_F": (_save(tmp_path / "nof.mat", X=good["F"], y=good["y"]), "'F'"),
        "no_y": (_save(tmp_path / "noy.mat", F=good["F"], labels=good["y"]), "'y'"),
        "F_shape": (_save(tmp_path / "fs.mat", F=good["F"][:100], y=good["y"]), "F has shape"),
        "y_shape": (_save(tmp_path / "ys.mat", F=good["F"], y=good["y"][:, :10]), "y has shape"),
        "y_matrix": (
            _save(tmp_path / "ym.mat", F=good["F"], y=np.zeros((64, 64), np.uint8)),
            "y has shape",
        ),
        "F_values": (_save(tmp_path / "fv.mat", F=good["F"] * 2, y=good["y"]), "F holds values"),
        "y_values": (_save(tmp_path / "yv.mat", F=good["F"], y=good["y"] + 3), "y holds values"),
        "duplicates": (_save(tmp_path / "dup.mat", F=duplicated, y=good["y"]), "duplicate rows"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "directory", "text", "no_F", "no_y", "F_shape", "y_shape", "y_matrix",
     "F_values", "y_values", "duplicates"],
)
def test_bad_files_raise_one_line_dataset_error(tmp_path, case):
    path, problem = _bad_files(tmp_path)[case]
    with pytest.raises(DatasetError) as info:
        load_var_u(path)
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError)


# --- split ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.05, 0.45, 0.8, 0.85])
def test_split_sizes_disjoint_cover_and_sorted(fraction):
    train, test = split_indices(4096, fraction, seed=1)
    assert len(train) == round(fraction * 4096)
    assert len(train) + len(test) == 4096
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(4096))
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()


def test_split_is_deterministic_in_seed():
    a, b, c = (split_indices(4096, 0.5, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_split_keeps_one_on_each_side():
    assert [len(part) for part in split_indices(10, 0.01, seed=0)] == [1, 9]
    assert [len(part) for part in split_indices(10, 0.99, seed=0)] == [9, 1]


@pytest.mark.parametrize("n, fraction", [(1, 0.5), (10, 0.0), (10, 1.0), (10, -0.2)])
def test_split_rejects_bad_arguments(n, fraction):
    with pytest.raises(ValueError):
        split_indices(n, fraction, seed=0)
