"""Hand-crafted game features read from the Atari RAM (128 bytes, `ale.getRAM()`).

The SAMDP maps of Zahavy et al. (2016) colour states by such features. Every position is in
pixels of ALE's RGB screen (`ale.getScreenRGB()`, 210x160 for Breakout and Seaquest, 250x160
for Pacman), x from the left, y from the top, of the object's top-left pixel. Sources of the
addresses: the Atari RAM annotations of the AtariARI benchmark (Anand et al. 2019,
atariari/benchmark/ram_annotations.py) and OCAtari's RAM extraction (Delfosse et al. 2023,
ocatari/ram/*.py, for the pixel offsets and Pacman). Each was checked here against the
rendered screen in real play (tests/studies/dqn_samdp/test_features.py).

Breakout (a ball is in play when ram[101] != 0; before FIRE and between lives it is 0):
  ball_x = ram[99] - 49, ball_y = ram[101] + 9: the ball's 2x4 sprite; null with no ball. After a
      miss, ball_y goes on past the paddle's rows (189-192) to about 219, off screen, until the life ends.
  paddle_x = ram[72] - 47: the 16-px paddle's left edge (rows 189-192), 8 to 144; the wall
      at x >= 152 hides its right part beyond x = 136.
  bricks_remaining: bricks standing, 108 (6 rows x 18) at the start of a wall.
  tunnel_open: some brick column (8 px wide) is empty in all 6 rows, so the ball can reach the
      space behind the wall. A path through a staircase of holes in different columns does not count.
  The wall is stored like the playfield registers that draw it: 36 bytes, ram[0:36]. The six
  rows (row 0 the top, red, y 57-62; row 5 the bottom, blue, y 87-92; 6 px each) use byte
  base + 5 - row of each base in _SEGMENTS; a bit is one 4-px playfield pixel, x = 8 + 4 * p
  for p = 0..35 left to right, and a brick is two pixels (the game clears both at once). AtariARI
  lists ram[0:30] as the bit map; the wall's left column lives in ram[30:36]. (Its
  blocks_hit_count, ram[77], is the score's low BCD byte, which ALE's Breakout reward reads.)
Seaquest (addresses from AtariARI):
  player_x = ram[70], player_y = ram[97] + 33: the submarine's 16x11 sprite.
  oxygen = ram[102]: 0 (empty) to 64 (full); the bar under the sea is min(oxygen, 63) px wide.
  divers_collected = ram[62]: 0 to 6, the diver icons under the oxygen bar.
Pacman (ALE's Pacman, the 1982 Atari 2600 game, not MsPacman; addresses from OCAtari):
  player_x = ram[49], player_y = 2 * ram[54] + 26: Pac-Man's 14-row sprite, to within 2 px (its
  left edge moves with the mouth; moving up or down, the drawn sprite is 2 px off ram[54]'s row).
Lives are not here: the transitions table has them from `ale.lives()`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

FEATURES: dict[str, pa.DataType] = {
    "ball_x": pa.int16(), "ball_y": pa.int16(), "paddle_x": pa.int16(),
    "bricks_remaining": pa.int16(), "tunnel_open": pa.bool_(),
    "player_x": pa.int16(), "player_y": pa.int16(), "oxygen": pa.int16(), "divers_collected": pa.int16(),
}

# Breakout's wall, left to right: (base byte, its bits in screen order). The bit orders are the
# TIA playfield's: PF0 uses bits 4-7, PF1 runs 7 to 0, PF2 0 to 7, mirrored per screen half.
_SEGMENTS = ((30, (6, 7)), (24, range(7, -1, -1)), (18, range(8)), (12, range(4, 8)),
             (6, range(7, -1, -1)), (0, range(6)))
_WALL_BYTE = np.array([[base + 5 - row for base, bits in _SEGMENTS for _ in bits] for row in range(6)])
_WALL_BIT = np.array([bit for _, bits in _SEGMENTS for bit in bits])  # (36,), the same in every row


def breakout_bricks(rams: np.ndarray) -> np.ndarray:
    """The Breakout wall from RAM: bool (..., 6, 18), [row, column], row 0 at the top
    (y = 57 + 6 * row), column c at x = 8 + 8 * c."""
    rams = np.asarray(rams)
    pixels = (rams[..., _WALL_BYTE] >> _WALL_BIT) & 1  # (..., 6, 36)
    return pixels.reshape(*pixels.shape[:-1], 18, 2).any(-1)


def _breakout(r: np.ndarray) -> dict:
    bricks = breakout_bricks(r)
    ball = r[:, 101] != 0
    return {"ball_x": (r[:, 99] - 49, ball), "ball_y": (r[:, 101] + 9, ball), "paddle_x": (r[:, 72] - 47, True),
            "bricks_remaining": (bricks.sum((1, 2)), True), "tunnel_open": ((~bricks).all(1).any(1), True)}


def _seaquest(r: np.ndarray) -> dict:
    return {"player_x": (r[:, 70], True), "player_y": (r[:, 97] + 33, True), "oxygen": (r[:, 102], True),
            "divers_collected": (r[:, 62], True)}


def _pacman(r: np.ndarray) -> dict:
    return {"player_x": (r[:, 49], True), "player_y": (2 * r[:, 54] + 26, True)}


_GAMES = {"Breakout": _breakout, "Seaquest": _seaquest, "Pacman": _pacman}


def features_batch(game: str, rams: np.ndarray) -> dict[str, np.ma.MaskedArray]:
    """Every feature of FEATURES for N RAM snapshots (N, 128): a masked array of N per name
    (int64, or bool for tunnel_open), masked where the feature is null (all of it for a
    feature the game lacks, and for every feature of a game not listed above)."""
    r = np.asarray(rams, dtype=np.int64).reshape(-1, 128)
    found = _GAMES[game](r) if game in _GAMES else {}
    out = {}
    for name, tp in FEATURES.items():
        values, valid = found.get(name, (np.zeros(len(r), np.int64), False))
        values = values.astype(bool if tp == pa.bool_() else np.int64)
        out[name] = np.ma.MaskedArray(values, mask=~np.broadcast_to(valid, values.shape))
    return out


def features(game: str, ram: np.ndarray) -> dict[str, int | bool | None]:
    """Every feature of FEATURES for one RAM snapshot (128 bytes): a Python int or bool, or
    None where the game lacks the feature or it is undefined (no ball in play)."""
    return {name: None if column.mask[0] else column.data[0].item()
            for name, column in features_batch(game, ram).items()}
