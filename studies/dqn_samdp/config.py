"""The dqn_samdp trial config, its presets and their grids.

Provenance: "Nature" is Mnih et al. 2015, Human-level control through deep RL (Extended
Data Table 1); "Graying" is Zahavy, Ben-Zrihem & Mannor, ICML 2016 (arXiv 1602.02658) and
its code bentzinir/graying_the_box; "RLlib" is RLlib 2.60's DQNConfig default; "Machado" is
Machado et al. 2018, Revisiting the ALE.
"""

from __future__ import annotations

import dataclasses

from lookinside.config import param
from lookinside.study import Preset

_STEPS = 10**10
DEFAULT_GAMES = ("Breakout", "Seaquest", "Pacman")


@dataclasses.dataclass(frozen=True)
class DQNSamdpConfig:
    stage: str = param("train", "what the trial does: train a DQN (recording it at record_at), record "
                       "another sweep's kept checkpoints, or build SAMDPs from another sweep's transitions",
                       "lookinside", choices=("train", "record", "build"))
    # What to play.
    game: str = param("Breakout", "ALE game (gymnasium's ALE id, e.g. Breakout, Seaquest, Pacman); a recording "
                      "trial plays its source trial's game",
                      "Graying: Breakout, Seaquest, Pacman (ALE's Pacman, not MsPacman)")
    seed: int = param(0, "seed of the env, exploration and network initialisation", "lookinside",
                      low=0, high=2**31 - 1)
    env_steps: int = param(10_000_000, "agent steps (4 frames each) to train in all",
                           "Graying trained to 10M-50M frames; Nature 50M frames = 12.5M steps", low=1, high=_STEPS)
    # The network (fixed by the study: Nature CNN, FC 512, Q head).
    dueling: bool = param(False, "dueling Q head", "Nature and Graying: no (RLlib default: yes)")
    double_q: bool = param(False, "double-Q targets", "Nature and Graying: no (RLlib default: yes)")
    # Environment.
    frame_skip: int = param(4, "frames each action repeats (max over the last two)", "Nature", low=1, high=16)
    frame_stack: int = param(4, "frames the network sees", "Nature", low=1, high=16)
    noop_max: int = param(30, "most random no-ops at the start of a game", "Nature", low=0, high=1000)
    terminal_on_life_loss: bool = param(True, "a lost life ends the training episode (not the game)",
                                        "Nature (DeepMind's code); Machado advises against it")
    clip_rewards: bool = param(True, "train on sign(reward)", "Nature")
    max_frames: int = param(108_000, "frames after which a game is cut (30 min at 60 Hz)", "Machado",
                            low=1000, high=10**7)
    # Learning.
    gamma: float = param(0.99, "discount", "Nature", low=0.0, high=1.0)
    lr: float = param(6.25e-5, "Adam learning rate (torch's Adam, eps 1e-8: RLlib's new stack ignores adam_epsilon)",
                      "Nature uses RMSProp 2.5e-4; RLlib's DQN learner is Adam, so Rainbow's (Hessel et al. "
                      "2018) Adam rate 6.25e-5", low=1e-8, high=1.0)
    grad_clip: float = param(40.0, "gradient clipping by global norm (the TD error is Huber-clipped besides)",
                             "RLlib default; Nature clips the TD error to [-1, 1] (Huber)", low=0.01, high=1e6)
    batch_size: int = param(32, "minibatch size", "Nature", low=1, high=4096)
    env_steps_per_update: int = param(4, "agent steps per minibatch update (replay ratio)", "Nature", low=1, high=1024)
    replay_capacity: int = param(1_000_000, "replay memory in agent steps (uniform sampling)", "Nature",
                                 low=100, high=10**8)
    learning_starts: int = param(50_000, "agent steps played before the first update",
                                 "Nature (replay start size)", low=0, high=_STEPS)
    target_update: int = param(40_000, "agent steps between target network copies",
                               "Nature: 10,000 updates x 4 steps per update", low=1, high=_STEPS)
    epsilon_start: float = param(1.0, "initial exploration epsilon", "Nature", low=0.0, high=1.0)
    epsilon_final: float = param(0.1, "final exploration epsilon", "Nature", low=0.0, high=1.0)
    epsilon_steps: int = param(1_000_000, "agent steps over which epsilon decays linearly", "Nature",
                               low=1, high=_STEPS)
    n_step: int = param(1, "n-step returns", "Nature (RLlib default 1)", low=1, high=100)
    # Sampling layout (performance only: the replay ratio above stays exact).
    num_env_runners: int = param(1, "env runner actors (one bundle of 1 CPU each)", "lookinside", low=1, high=256)
    envs_per_runner: int = param(1, "envs stepped together in each env runner", "lookinside", low=1, high=64)
    rollout_fragment_length: int = param(
        64, "agent steps each env samples per training iteration step; the updates in between keep the "
        "replay ratio (rollout x envs x runners / env_steps_per_update updates)", "lookinside", low=1, high=10**5)
    steps_per_iteration: int = param(5000, "agent steps per Algorithm.train() call: one `training` row",
                                     "RLlib min_sample_timesteps_per_iteration (default 1000)", low=1, high=10**7)
    # Checkpoints and recording.
    checkpoint_every: int = param(1_000_000, "agent steps between kept RLlib checkpoints (artifacts, listed in "
                                  "`checkpoints`); also the trial's resume points", "lookinside", low=1, high=_STEPS)
    record_at: tuple[int, ...] = param(
        (10_000_000,), "record at the first checkpoint at or after each of these agent steps "
        "(a checkpoint is forced there)", "Graying recorded its trained DQN's play", low=0, high=_STEPS)
    record_games: int = param(2, "games (trajectories) played per recording", "Graying: ~120k states in all",
                              low=0, high=10**6)
    record_envs: int = param(4, "games played in lockstep, their frames batched through the network",
                             "lookinside", low=1, high=1024)
    record_epsilon: float = param(0.05, "epsilon-greedy exploration while recording", "Nature's evaluation",
                                  low=0.0, high=1.0)
    record_max_steps: int = param(27_000, "agent steps after which a recorded game is cut",
                                  "Machado: 108,000 frames", low=1, high=10**7)
    record_screens: bool = param(False, "also record each step's RGB screen (PNG bytes)",
                                 "Graying saved screens to show cluster exemplars")
    # Stages record and build read another sweep of this study.
    source_sweep: str | None = param(None, "the sweep a record trial reads kept checkpoints from, or a build "
                                     "trial transitions from", "lookinside")
    source_trial: str | None = param(None, "the source sweep's training trial (default: every one)", "lookinside")
    source_checkpoint: int = param(-1, "the checkpoint (agent steps) to record or build from; -1 each trial's last",
                                   "lookinside", low=-1, high=_STEPS)
    # The SAMDP build (samdp.py documents each step).
    k: int = param(22, "clusters (aggregate states)", "Graying code: 22 clusters", low=2, high=10_000)
    method: str = param("spatio_temporal", "clustering: K-means on [x, y, V], or on time-shifted copies too",
                        "Graying: spatio-temporal K-means", choices=("spatio_temporal", "kmeans"))
    window: int = param(2, "spatio-temporal half-window (steps), weights 0.75^|dt|", "Graying code", low=0, high=100)
    embedding: str = param("tsne", "the 2-D map: openTSNE, or the first two principal components (fast)",
                           "Graying: Barnes-Hut t-SNE", choices=("tsne", "pca"))
    pca_dims: int = param(50, "PCA dimensions before t-SNE", "usual practice (dqn_samdp.md)", low=2, high=4096)
    perplexity: float = param(30.0, "t-SNE perplexity", "Graying (K = 3 x perplexity neighbours)", low=1.0, high=1000.0)
    fit_sample: int = param(10_000, "states the PCA and the t-SNE map are fitted on; the others are placed",
                            "lookinside", low=10, high=10**7)
    coherence: int = param(5, "temporal coherence: an exit counts when the next k+1 labels stay", "Graying smdp.py",
                           low=0, high=1000)
    trunc: float = param(0.1, "transition probabilities below this are dropped", "Graying smdp.py", low=0.0, high=1.0)
    workers: int = param(1, "workers (one CPU bundle each) that run the build's map steps", "lookinside",
                         low=1, high=1024)
    shards: int = param(16, "runs of whole trajectories the build maps over (fixed, so that the result does not "
                        "depend on workers)", "lookinside", low=1, high=100_000)

    # Test hooks.
    crash_after_rows: int = param(
        0, "test hook: on a trial's first attempt only, the process exits with os._exit(1) once this many "
        "transitions rows are recorded (needs marker_dir); 0 never", "lookinside", low=0, high=10**9)
    marker_dir: str | None = param(None, "test hook: a folder where each trial marks its first attempt", "lookinside")

    def __post_init__(self):
        try:
            from lookinside.studies.dqn_samdp import atari
        except ImportError as err:
            raise ValueError(f"dqn_samdp needs the rl extra (pip install 'lookinside[rl]'): {err}") from None
        atari.check_game(self.game)
        if self.stage != "train" and self.source_sweep is None:
            raise ValueError(f"stage {self.stage} reads another sweep: set source_sweep=SWEEP_ID")
        if self.stage == "train" and self.source_sweep is not None:
            raise ValueError("source_sweep is for stages record and build, not train")
        per_round = self.rollout_fragment_length * self.envs_per_runner * self.num_env_runners
        if per_round % self.env_steps_per_update:
            raise ValueError(f"rollout_fragment_length x envs_per_runner x num_env_runners ({per_round}) must be a "
                             f"multiple of env_steps_per_update ({self.env_steps_per_update}) to keep the replay ratio")
        if self.epsilon_final > self.epsilon_start:
            raise ValueError("epsilon_final exceeds epsilon_start")
        if self.stage == "train" and any(s > self.env_steps for s in self.record_at):
            raise ValueError(f"record_at {self.record_at} lies beyond env_steps {self.env_steps}")
        if self.dueling and self.record_games > 0:
            raise ValueError("the recorder reads a plain Q head: set dueling=false or record_games=0")


PRESETS = {
    "smoke": Preset(
        "CI-sized: 3000 steps of Breakout on the CPU, one checkpoint, two short recorded games",
        {"env_steps": 3000, "learning_starts": 500, "replay_capacity": 5000, "target_update": 1000,
         "epsilon_steps": 2000, "steps_per_iteration": 500, "checkpoint_every": 3000, "record_at": (3000,),
         "record_games": 2, "record_envs": 2, "record_max_steps": 300, "lr": 1e-4},
        {"game": ["Breakout"], "seed": [0]}),
    "laptop": Preset(
        "one game end to end within an hour on 2 cores: 100k steps of Breakout (the pipeline, "
        "not the paper's scores), checkpoints every 25k, 8 games recorded at 50k and 100k",
        {"env_steps": 100_000, "learning_starts": 10_000, "replay_capacity": 100_000, "target_update": 8000,
         "epsilon_steps": 50_000, "checkpoint_every": 25_000, "record_at": (50_000, 100_000),
         "record_games": 8, "record_envs": 8, "lr": 1e-4},
        {"game": ["Breakout"], "seed": [0]}),
    "samdp_smoke": Preset(
        "CI-sized SAMDP builds from a sweep's transitions (--set source_sweep=ID): k 4 and 6, both methods, "
        "two workers",
        {"stage": "build", "workers": 2, "shards": 4, "fit_sample": 2000},
        {"k": [4, 6], "method": ["spatio_temporal", "kmeans"]}),
    "samdp": Preset(
        "SAMDP builds from a sweep's transitions (--set source_sweep=ID): k from 6 to 30, both methods, "
        "3 seeds (minutes on a CPU for the laptop preset's 2,000 states)",
        {"stage": "build"},
        {"k": [6, 10, 14, 18, 22, 26, 30], "method": ["spatio_temporal", "kmeans"], "seed": [0, 1, 2]}),
    "paper": Preset(
        "Graying's scale on GPUs: Breakout, Seaquest and Pacman x 3 seeds x 10M steps, "
        "recorded at 5M and 10M (60 games each)",
        {"env_steps": 10_000_000, "checkpoint_every": 1_000_000, "record_at": (5_000_000, 10_000_000),
         "record_games": 60, "record_envs": 16, "num_env_runners": 4, "envs_per_runner": 2},
        {"game": list(DEFAULT_GAMES), "seed": [0, 1, 2]}),
}
