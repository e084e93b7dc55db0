"""The implicit regularisation study's train() in-process (tests/studies/inprocess.py), at torch's
default thread count."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import inprocess  # noqa: E402

from lookinside.studies.implicit_regularization import STUDY  # noqa: E402


def run(configs, pack=True):
    """train() on configs (one pack, or one member per call); returns (metrics, trials) tables."""
    found = inprocess.run(STUDY, configs, pack, threads=None)
    return found["metrics"], found["trials"]


def tables(configs_by_pack):
    """{'metrics', 'trials'} of several packs, each trained as one."""
    return inprocess.tables(STUDY, configs_by_pack, threads=None)
