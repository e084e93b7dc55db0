"""RAM features checked against the rendered screen in real play (fixed seeds, ALE v5, frameskip 1)."""

import cv2
import numpy as np
import pyarrow as pa
import pytest

from lookinside.studies.dqn_samdp.features import FEATURES, breakout_bricks, features, features_batch

gym = pytest.importorskip("gymnasium")
ale_py = pytest.importorskip("ale_py")
gym.register_envs(ale_py)

RED = (200, 72, 72)  # Breakout's ball, paddle and top brick row


def make(game):
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0, full_action_space=False)
    env.reset(seed=0)
    return env, env.unwrapped.ale


def bbox(mask):
    """(x0, y0, x1, y1) of a bool image's True pixels, or None."""
    ys, xs = np.nonzero(mask)
    return (xs.min(), ys.min(), xs.max(), ys.max()) if len(xs) else None


def screen_wall(rgb):
    """Breakout bricks seen on screen: (6, 18) bool, a brick where its whole 8x6 cell is coloured."""
    lit = rgb[57:93, 8:152].any(2)
    return lit.reshape(6, 6, 18, 8).all((1, 3))


def test_schema_and_other_games():
    assert all(isinstance(t, pa.DataType) for t in FEATURES.values())
    ram = np.zeros(128, np.uint8)
    for game in ("Breakout", "Seaquest", "Pacman", "Pong"):
        row = features(game, ram)
        assert list(row) == list(FEATURES)
        pa.Table.from_pylist([row], schema=pa.schema(list(FEATURES.items())))  # the values fit the types
    assert all(v is None for v in features("Pong", ram).values())
    assert features("Seaquest", ram)["ball_x"] is None and features("Breakout", ram)["oxygen"] is None
    batch = features_batch("Breakout", np.zeros((5, 128), np.uint8))
    assert batch["ball_x"].mask.all() and not batch["paddle_x"].mask.any() and batch["bricks_remaining"].shape == (5,)


@pytest.fixture(scope="module")
def breakout_play():
    """3,000 frames of Breakout: FIRE when no ball, else follow the ball with 25% random actions."""
    env, ale = make("Breakout")
    rng = np.random.default_rng(0)
    rams, rewards, walls, paddles, balls = [], [], [], [], []
    start = features("Breakout", ale.getRAM())
    for _ in range(3000):
        f = features("Breakout", ale.getRAM())
        if f["ball_x"] is None:
            action = 1
        elif rng.random() < 0.25:
            action = int(rng.integers(4))
        else:
            gap = f["ball_x"] - (f["paddle_x"] + 7)
            action = 2 if gap > 2 else 3 if gap < -2 else 0
        _, reward, terminated, truncated, _ = env.step(action)
        assert not (terminated or truncated)
        rgb = ale.getScreenRGB()
        red = (rgb == RED).all(2)
        rams.append(ale.getRAM().copy())
        rewards.append(reward)
        walls.append(screen_wall(rgb))
        paddles.append(bbox(red[189:193, 8:152]))
        balls.append(bbox(red[93:189, 8:152]))  # between the wall and the paddle
    env.close()
    return start, np.array(rams), np.array(rewards), np.array(walls), paddles, balls


def test_breakout_at_reset(breakout_play):
    start = breakout_play[0]
    assert start["bricks_remaining"] == 108 and start["tunnel_open"] is False
    assert start["ball_x"] is None and start["ball_y"] is None


def test_breakout_bricks_match_screen_and_rewards(breakout_play):
    _, rams, rewards, walls, _, _ = breakout_play
    assert (breakout_bricks(rams) == walls).all()  # brick for brick, every frame
    f = features_batch("Breakout", rams)
    assert (f["bricks_remaining"] == walls.sum((1, 2))).all()
    assert (f["tunnel_open"] == (~walls).all(1).any(1)).all()
    drops = -np.diff(np.r_[108, f["bricks_remaining"]])
    assert set(drops) <= {0, 1} and ((drops == 1) == (rewards > 0)).all()
    assert drops.sum() >= 10  # the play does break bricks


def test_breakout_paddle_and_ball_match_screen(breakout_play):
    _, rams, _, _, paddles, balls = breakout_play
    f = features_batch("Breakout", rams)
    paddle_checked = ball_checked = 0
    for i, (paddle, ball) in enumerate(zip(paddles, balls)):
        x, y, px = f["ball_x"][i], f["ball_y"][i], int(f["paddle_x"][i])
        in_play = x is not np.ma.masked
        if not in_play or not 185 <= y <= 192:  # the ball is not in the paddle's rows
            assert paddle is not None and paddle[0] + 8 == px and paddle[2] + 8 == min(px + 15, 151)
            paddle_checked += 1
        if in_play and 93 <= y and y + 3 <= 188 and 8 <= x and x + 1 <= 151:  # the whole ball in the open
            assert ball is not None and (ball[0] + 8, ball[1] + 93, ball[2] + 8, ball[3] + 93) == (x, y, x + 1, y + 3)
            ball_checked += 1
        elif not in_play:
            assert ball is None
    assert paddle_checked > 2500 and ball_checked > 2000


def test_batch_agrees_with_single_rows(breakout_play):
    rams = breakout_play[1][::50]
    batch = features_batch("Breakout", rams)
    for i, ram in enumerate(rams):
        row = {k: None if v.mask[i] else v.data[i].item() for k, v in batch.items()}
        assert row == features("Breakout", ram)


def brick_bits():
    """{(row, column): [(byte, bit), ...]}: the RAM bits of each brick, found by setting one bit alone."""
    out = {}
    for byte in range(36):
        for bit in range(8):
            ram = np.zeros(128, np.uint8)
            ram[byte] = 1 << bit
            for row, column in np.argwhere(breakout_bricks(ram)):
                out.setdefault((row, column), []).append((byte, bit))
    return out


def cleared(ram, bits):
    ram = ram.copy()
    for byte, bit in bits:
        ram[byte] &= ~np.uint8(1 << bit)
    return ram


def test_breakout_wall_layout(breakout_play):
    bits = brick_bits()
    assert len(bits) == 108 and all(len(b) == 2 for b in bits.values())  # two playfield pixels a brick
    rams = breakout_play[1]
    for (byte0, bit0), (byte1, bit1) in bits.values():  # the game clears both at once
        assert ((rams[:, byte0] >> bit0 & 1) == (rams[:, byte1] >> bit1 & 1)).all()


def test_breakout_tunnel():
    bits = brick_bits()
    env, ale = make("Breakout")
    env.step(1)  # serve, then play on a little
    for _ in range(30):
        env.step(0)
    ram = ale.getRAM().copy()
    column = 4
    column_bits = [b for row in range(6) for b in bits[row, column]]
    f = features("Breakout", ram)
    assert f["tunnel_open"] is False and f["bricks_remaining"] == 108
    f = features("Breakout", cleared(ram, column_bits[:-1]))  # half a brick left: closed
    assert f["tunnel_open"] is False and f["bricks_remaining"] == 103
    f = features("Breakout", cleared(ram, column_bits))
    assert f["tunnel_open"] is True and f["bricks_remaining"] == 102
    staircase = [b for row in range(6) for b in bits[row, column + row // 3]]  # two half columns
    f = features("Breakout", cleared(ram, staircase))
    assert f["tunnel_open"] is False and f["bricks_remaining"] == 102
    f = features("Breakout", cleared(ram, [b for bs in bits.values() for b in bs]))
    assert f["tunnel_open"] is True and f["bricks_remaining"] == 0
    # The emulator draws the RAM's wall: the cleared column shows empty from top to bottom.
    for byte, value in enumerate(cleared(ram, column_bits)[:36]):
        ale.setRAM(byte, int(value))
    ale.act(0)
    ale.act(0)
    wall = screen_wall(ale.getScreenRGB())
    assert not wall[:, column].any() and wall[:, np.arange(18) != column].all()
    assert features("Breakout", ale.getRAM())["tunnel_open"] is True
    env.close()


def random_play(game, frames, hold):
    """(RAM, screen) after each frame of play with uniform random actions, each held `hold` frames."""
    env, ale = make(game)
    rng = np.random.default_rng(0)
    for t in range(frames):
        if t % hold == 0:
            action = int(rng.integers(env.action_space.n))
        _, _, terminated, truncated, _ = env.step(action)
        yield ale.getRAM().copy(), ale.getScreenRGB()
        if terminated or truncated:
            env.reset()
    env.close()


def largest_blob(mask):
    """(x0, y0, width, height) of the largest 8-connected blob of a bool image, or None."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return tuple(stats[1 + stats[1:, cv2.CC_STAT_AREA].argmax(), :4]) if n > 1 else None


def test_seaquest_matches_screen():
    sub_checked = divers_seen = 0
    for ram, rgb in random_play("Seaquest", 2000, hold=10):
        f = features("Seaquest", ram)
        sub = largest_blob((rgb[40:160] == (187, 187, 53)).all(2))  # the yellow submarine (and its torpedo)
        if sub is not None and sub[2:] == (16, 11):  # whole, torpedo apart
            assert (sub[0], sub[1] + 40) == (f["player_x"], f["player_y"])
            sub_checked += 1
        assert (rgb[172] == (214, 214, 214)).all(1).sum() == min(f["oxygen"], 63)  # the oxygen bar
        icons = (rgb[178:187, 58:106] == (24, 26, 167)).all(2).any(0).reshape(6, 8).any(1)  # 8-px diver slots
        assert icons.sum() == f["divers_collected"] and not icons[f["divers_collected"]:].any()  # from the left
        divers_seen += f["divers_collected"] > 0
    assert sub_checked > 500 and divers_seen > 100


def test_pacman_matches_screen():
    dx, dy = [], []
    for ram, rgb in random_play("Pacman", 2000, hold=16):
        f = features("Pacman", ram)
        box = bbox((rgb[:200] == (252, 224, 144)).all(2))  # Pac-Man in the maze
        if box is not None and box[3] - box[1] == 13:  # the whole 14-row sprite
            dx.append(box[0] - f["player_x"])
            dy.append(box[1] - f["player_y"])
    dx, dy = np.array(dx), np.array(dy)
    assert len(dx) > 1500
    assert np.mean((np.abs(dx) <= 2) & (np.abs(dy) <= 2)) > 0.97
