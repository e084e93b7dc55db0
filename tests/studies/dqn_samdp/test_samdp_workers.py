"""The SAMDP builder's map steps on Ray workers give what one process gives, bit for bit."""

import importlib.util
import pathlib

import numpy as np
import pytest

from lookinside.studies.dqn_samdp import samdp

ray = pytest.importorskip("ray")
_spec = importlib.util.spec_from_file_location("samdp_rooms", pathlib.Path(__file__).with_name("test_samdp.py"))
rooms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rooms)


@pytest.fixture(scope="module")
def local_ray():
    from lookinside import ray_setup

    ray_setup.start_ray(None)
    yield
    ray.shutdown()


@pytest.mark.parametrize("embedding", ["pca", "tsne"])
def test_one_worker_and_several_give_identical_results(local_ray, embedding):
    table = rooms.rooms_table(60, 1.5, seed=3)[0]
    alone = samdp.build_samdp(table, 5, "spatio_temporal", seed=1, embedding=embedding, fit_sample=1500)
    for workers in (2, 3):
        spread = samdp.build_samdp(table, 5, "spatio_temporal", seed=1, embedding=embedding, fit_sample=1500,
                                   workers=workers)
        np.testing.assert_array_equal(spread.labels, alone.labels)
        np.testing.assert_array_equal(spread.xy, alone.xy)
        np.testing.assert_array_equal(spread.P, alone.P)
        np.testing.assert_array_equal(spread.v_samdp, alone.v_samdp)
        assert spread.scores == alone.scores
