"""Failures of gradient-based deep learning: Shalev-Shwartz, Shamir & Shammah 2017 (arXiv 1703.07950).

Six experiments, one per `experiment` value: parity (an uninformative gradient), tuples and
tuples_snr, stocks (end-to-end against decomposition, and why: the gradient's signal-to-noise
ratio), piecewise_linear (conditioning and architecture), flat_activation (flat activations
and a forward-only update).
"""

import pyarrow as pa

from lookinside.studies.gradient_failures import trial
from lookinside.studies.gradient_failures.config import PACK_FIELDS, PRESETS, GFConfig
from lookinside.study import Deferred, Study

TABLES = {
    # Per measurement: split "test" (the trial's fixed fresh examples). loss: hinge for parity and
    # tuples, the trained loss for stocks, mean squared error for curves and flat_activation;
    # accuracy: fraction correct (flat_activation: predicted level equal to the true one; NaN
    # where there is no class, the curves).
    "metrics": pa.schema([("trial_id", pa.string()), ("iteration", pa.int64()), ("split", pa.string()),
                          ("loss", pa.float64()), ("accuracy", pa.float64())]),
    # At the initialisation: parity, across n_targets random targets; stocks, across n_targets examples.
    "gradient_variance": pa.schema([("trial_id", pa.string()), ("n_targets", pa.int64()),
                                    ("variance", pa.float64())]),
    # tuples_snr, at the initialisation: signal ||E g||^2, noise E||g - E g||^2, snr their ratio.
    "gradient_snr": pa.schema([("trial_id", pa.string()), ("layer", pa.string()), ("signal", pa.float64()),
                               ("noise", pa.float64()), ("snr", pa.float64())]),
    # piecewise_linear: the condition number of the trial's formulation's quadratic problem at length n.
    "condition_numbers": pa.schema([("trial_id", pa.string()), ("n", pa.int64()),
                                    ("condition_number", pa.float64())]),
    # A fixed test example's target and prediction at each position (curves: the kink vector p, or the
    # curve f for the autoencoder; flat_activation: u on a grid of v*.x + b*).
    "curves": pa.schema([("trial_id", pa.string()), ("iteration", pa.int64()), ("position", pa.float64()),
                         ("target", pa.float64()), ("prediction", pa.float64())]),
}




STUDY = Study(
    name="gradient_failures",
    title="Failures of gradient-based deep learning (Shalev-Shwartz, Shamir & Shammah 2017)",
    config=GFConfig,
    presets=PRESETS,
    train=trial.train,
    tables=TABLES,
    figures=Deferred("lookinside.studies.gradient_failures.figures", "draw"),
    summary=Deferred("lookinside.studies.gradient_failures.findings", "summary"),
    findings=Deferred("lookinside.studies.gradient_failures.findings", "summary_lines"),
    pack_fields=PACK_FIELDS,
    member_bytes=trial.member_bytes,
)
