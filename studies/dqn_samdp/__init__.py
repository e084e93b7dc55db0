"""dqn_samdp: Atari DQNs on RLlib, recorded for the Semi-Aggregated MDP (Zahavy et al. 2016).

Training and recording (this package's trial.py, recorder.py): RLlib DQN with the 2016
network on ALE games; kept RLlib checkpoints; recorded play with the 512-d embedding,
Q-values and hand-crafted game features, streamed into the `transitions` table that the
SAMDP builder reads.
"""

import pyarrow as pa

from lookinside.studies.dqn_samdp import trial
from lookinside.studies.dqn_samdp.config import PRESETS, DQNSamdpConfig
from lookinside.studies.dqn_samdp.features import FEATURES
from lookinside.studies.dqn_samdp.samdp import SamdpResult, build_samdp
from lookinside.study import Deferred, Study

EMBEDDING = 512  # the Q head's hidden layer (module.py)
__all__ = ["STUDY", "TABLES", "SamdpResult", "build_samdp"]

TABLES = {
    # One row per Algorithm.train() call (steps_per_iteration agent steps of 4 frames).
    # episodes: games finished so far (a game is all its lives); episode_return_mean and _max:
    # the unclipped scores of the games that finished during this iteration (NaN if none).
    "training": pa.schema([
        ("trial_id", pa.string()), ("env_steps", pa.int64()), ("episodes", pa.int64()),
        ("episode_return_mean", pa.float64()), ("episode_return_max", pa.float64()),
        ("env_steps_per_second", pa.float64())]),
    # One row per kept RLlib checkpoint: trial.load_module(uri) loads its network.
    "checkpoints": pa.schema([("trial_id", pa.string()), ("env_steps", pa.int64()), ("uri", pa.string())]),
}


# One row per recorded step (recorder.py says what a row, a trajectory and a step are).
# source_trial_id and checkpoint_step name the network that played; embedding: the 512-unit
# layer's output before its ReLU; value: max Q; the game features (features.py) are null
# where the game lacks them; screen: PNG bytes when record_screens, else null.
TABLES["transitions"] = pa.schema([
    ("trial_id", pa.string()), ("source_trial_id", pa.string()), ("checkpoint_step", pa.int64()),
    ("game", pa.string()), ("trajectory", pa.int64()), ("step", pa.int64()), ("action", pa.int64()),
    ("reward", pa.float32()), ("terminated", pa.bool_()), ("lives", pa.int64()),
    ("q_values", pa.list_(pa.float32())), ("value", pa.float32()),
    ("embedding", pa.list_(pa.float32(), EMBEDDING)),
    *FEATURES.items(),
    ("screen", pa.binary())])

# SAMDP builds (stage build; samdp.py): one row per state of the source transitions, with
# its map position and cluster (value and the game features copied from the transitions, so
# that the maps need no other sweep); one row per cluster (x, y: the mean map position of
# its states; policy: the greedy SAMDP policy's next cluster, -1 if none); one row per
# pair of clusters with a coherent transition (count, off the diagonal; terminations on it)
# or a kept probability; one row of scores per build.
TABLES["embedding_2d"] = pa.schema([
    ("trial_id", pa.string()), ("source_trial_id", pa.string()), ("checkpoint_step", pa.int64()),
    ("trajectory", pa.int64()), ("step", pa.int64()), ("x", pa.float64()), ("y", pa.float64()),
    ("cluster", pa.int64()), ("value", pa.float32()), *FEATURES.items()])
TABLES["samdp_clusters"] = pa.schema([
    ("trial_id", pa.string()), ("cluster", pa.int64()), ("size", pa.int64()), ("v_dqn", pa.float64()),
    ("v_samdp", pa.float64()), ("reward", pa.float64()), ("mean_duration", pa.float64()),
    ("x", pa.float64()), ("y", pa.float64()), ("policy", pa.int64()), ("policy_correlation", pa.float64())])
TABLES["samdp_transitions"] = pa.schema([
    ("trial_id", pa.string()), ("source", pa.int64()), ("target", pa.int64()), ("probability", pa.float64()),
    ("count", pa.int64())])
TABLES["samdp_scores"] = pa.schema([
    ("trial_id", pa.string()), ("vmse", pa.float64()), ("entropy", pa.float64()), ("inertia", pa.float64()),
    ("intensity", pa.float64())])




STUDY = Study(
    name="dqn_samdp",
    title="DQN embeddings on Atari, recorded for the SAMDP (Zahavy, Ben-Zrihem & Mannor 2016)",
    config=DQNSamdpConfig,
    presets=PRESETS,
    train=trial.train,
    tables=TABLES,
    figures=Deferred("lookinside.studies.dqn_samdp.figures", "draw"),
    summary=Deferred("lookinside.studies.dqn_samdp.figures", "summary"),
    prepare=trial.prepare,
    resources=trial.resources,
    figure_columns={"training": ["env_steps", "episodes", "episode_return_mean", "episode_return_max",
                                 "env_steps_per_second"],
                    "transitions": ["step"]},   # the summary counts them; the maps read embedding_2d
)
