"""Convolutional networks as hierarchical tensor decompositions: Cohen, Sharir, Shashua et al.
(survey arXiv 1705.02302; COLT 2016 depth efficiency; ICLR 2017 pooling geometry).

Two experiments. pooling_geometry: convolutional arithmetic circuits (ConvACs) and ReLU nets of
the same topology learn the closedness and symmetry blob tasks with square or mirror pooling
windows; the geometry decides which task a network learns well. separation_rank: the rank of a
random network's grid tensor matricised under a partition of its inputs, for deep ConvACs
(square and mirror pooling) and shallow ones (CP with Z channels), from which the report
derives depth efficiency: the smallest Z whose ranks match a deep net's.
"""

import pyarrow as pa

from lookinside.studies.tensor_convnets.config import PACK_FIELDS, PRESETS, TCConfig
from lookinside.study import Deferred, Study

TABLES = {
    # pooling_geometry: the fraction of correctly classified images after `step` optimiser steps, on
    # the test images (split "test") or on the first 1,000 training images (split "train").
    "accuracy": pa.schema([("trial_id", pa.string()), ("step", pa.int64()), ("split", pa.string()),
                           ("accuracy", pa.float64())]),
    # separation_rank: the numerical rank of the grid tensor matricised under `partition` (the
    # partitions of rank.partitions, and "mirror_<name>" for their images under mirror pooling),
    # out of max_rank = min(2^|I|, 2^|J|), counting singular values above tolerance x the largest.
    "separation_rank": pa.schema([("trial_id", pa.string()), ("partition", pa.string()), ("rank", pa.int64()),
                                  ("max_rank", pa.int64()), ("tolerance", pa.float64())]),
}

_TRIAL = "lookinside.studies.tensor_convnets.trial"
_FINDINGS = "lookinside.studies.tensor_convnets.findings"

STUDY = Study(
    name="tensor_convnets",
    title="Convolutional networks as hierarchical tensor decompositions (Cohen, Sharir, Shashua et al.)",
    config=TCConfig,
    presets=PRESETS,
    train=Deferred(_TRIAL, "train"),
    tables=TABLES,
    figures=Deferred("lookinside.studies.tensor_convnets.figures", "draw"),
    summary=Deferred(_FINDINGS, "summary"),
    findings=Deferred(_FINDINGS, "summary_lines"),
    pack_fields=PACK_FIELDS,
    prepare=Deferred(_TRIAL, "prepare"),
    member_bytes=Deferred(_TRIAL, "member_bytes"),
)
