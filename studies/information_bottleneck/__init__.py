"""Information bottleneck: Shwartz-Ziv & Tishby 2017, with Saxe et al. 2018 as its critique.

Tiny tanh / ReLU networks on the 12-bit task; on log-spaced epochs, every layer's mutual
information with the input and the label (binned with either range rule, and KDE bounds),
gradient signal-to-noise per layer, and train / test loss and accuracy.
"""

import pyarrow as pa

from lookinside.studies.information_bottleneck import trial
from lookinside.studies.information_bottleneck.config import PACK_FIELDS, PRESETS, IBConfig
from lookinside.study import Deferred, Study

TABLES = {
    # estimator: bin_fixed | bin_observed | kde_upper | kde_lower; layer 1.. counts hidden
    # layers from the input, the last layer is the softmax output; bits.
    "information": pa.schema([
        ("trial_id", pa.string()), ("epoch", pa.int64()), ("layer", pa.int64()),
        ("estimator", pa.string()), ("i_xt", pa.float64()), ("i_ty", pa.float64())]),
    "gradients": pa.schema([
        ("trial_id", pa.string()), ("epoch", pa.int64()), ("layer", pa.int64()),
        ("grad_mean_norm", pa.float64()), ("grad_std_norm", pa.float64()), ("weight_norm", pa.float64())]),
    "metrics": pa.schema([
        ("trial_id", pa.string()), ("epoch", pa.int64()), ("train_loss", pa.float64()),
        ("train_acc", pa.float64()), ("test_loss", pa.float64()), ("test_acc", pa.float64())]),
}






STUDY = Study(
    name="information_bottleneck",
    title="Information bottleneck (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018)",
    config=IBConfig,
    presets=PRESETS,
    train=trial.train,
    tables=TABLES,
    figures=Deferred("lookinside.studies.information_bottleneck.figures", "draw"),
    summary=Deferred("lookinside.studies.information_bottleneck.figures", "summary"),
    findings=Deferred("lookinside.studies.information_bottleneck.findings", "summary_lines"),
    pack_fields=PACK_FIELDS,
    prepare=trial.prepare,
    member_bytes=trial.member_bytes,
    member_state=trial.member_state,
    # What figures.draw and figures.summary read; `report` loads only these (the findings
    # module reads every column).
    figure_columns={"information": ["epoch", "layer", "estimator", "i_xt", "i_ty"],
                    "gradients": ["epoch", "layer", "grad_mean_norm", "grad_std_norm"],
                    "metrics": ["epoch", "train_acc", "test_acc"]},
)
