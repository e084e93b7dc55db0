"""The tensor_convnets study's train() in-process (tests/studies/inprocess.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import inprocess  # noqa: E402

from lookinside.studies.tensor_convnets import STUDY  # noqa: E402


def run(configs, pack=True):
    return inprocess.run(STUDY, configs, pack)


def tables(packs):
    return inprocess.tables(STUDY, packs)
