"""Implicit regularisation: Neyshabur, Tomioka, Salakhutdinov & Srebro 2017 (arXiv 1705.03071).

Two experiments. width: one-hidden-layer ReLU nets of H = 4..4096 units under plain SGD,
whose test error keeps falling after the training error reaches zero, tracked by norms
rather than by H. path_sgd: Path-SGD against SGD and AdaGrad on deeper MLPs, from a
balanced init and from an unbalanced init that computes the same function.
"""

import pyarrow as pa

from lookinside.studies.implicit_regularization import trial
from lookinside.studies.implicit_regularization.config import PACK_FIELDS, PRESETS, IRConfig
from lookinside.study import Deferred, Study

TABLES = {
    # One row per member and epoch (0: the init) until it stops; errors are fractions,
    # losses cross-entropy in nats (train: on its own, possibly noisy, labels); norms over
    # all weights and biases (l2), all input-output paths (path), weight matrices (spectral).
    "metrics": pa.schema([
        ("trial_id", pa.string()), ("epoch", pa.int64()), ("train_error", pa.float64()),
        ("test_error", pa.float64()), ("train_loss", pa.float64()), ("test_loss", pa.float64()),
        ("l2_norm", pa.float64()), ("path_norm", pa.float64()), ("spectral_product", pa.float64())]),
}





STUDY = Study(
    name="implicit_regularization",
    title="Implicit regularisation and Path-SGD (Neyshabur et al. 2017)",
    config=IRConfig,
    presets=PRESETS,
    train=trial.train,
    tables=TABLES,
    figures=Deferred("lookinside.studies.implicit_regularization.figures", "draw"),
    summary=Deferred("lookinside.studies.implicit_regularization.findings", "summary"),
    findings=Deferred("lookinside.studies.implicit_regularization.findings", "summary_lines"),
    pack_fields=PACK_FIELDS,
    prepare=trial.prepare,
    member_bytes=trial.member_bytes,
)
