"""The synthetic "blob" benchmark of Cohen & Shashua, "Inductive Bias of Deep Convolutional Networks
through Pooling Geometry" (ICLR 2017): 32x32 binary images of one warped, rotated, shrunk and
perforated ellipse each, ranked by how closed and how left-right symmetric the blob is.

Re-implemented from the authors' generator, HUJI-Deep/inductive-pooling, file exp/blob/generate_blob.py.
That script has no functions: everything below refers to its module-level constants and to the
steps of its generation loop ("while I_i < set_size"), its scoring lines and its labelling loop
("Index positive/negative examples for classification"). numpy/scipy.ndimage replace its libraries;
the numeric constants are the script's own.

Recipe as implemented (provenance: generate_blob.py, the step named in brackets)
1. Ellipse [IM_SZ2, ELLP_MIN_HGT2, "Create ellipse with random height"]: centre (15.5, 15.5),
   horizontal semi-axis a = 16 (so width 32), vertical semi-axis b = int(2**U(3.5, 5) / 2), the
   pixels with ((x - 15.5) / a)**2 + ((y - 15.5) / b)**2 < 1 (strict), x the column, y the row.
   NOTE vs the study notes ("height 2^U(3.5, 5)"): the script truncates the semi-axis to an
   integer, so the height is 2 * b with b in {5, ..., 15}, an even 10 to 30 px, not a continuous one.
2. Sine warp [WARP_SIN_MAX_AMP, WARP_SIN_MAX_FREQ, "Warp according to random sine"]: amplitude
   A ~ U(0, 4), frequency f ~ U(0, 3 * 2 pi / 32) (at most three periods across the image), no
   phase; column i is rolled down by int(A sin(f i)) rows. NOTE: the shift is truncated towards
   zero (ndarray.astype(int)), so it is an integer of magnitude at most 3, and np.roll is circular:
   rows pushed past an edge re-enter at the other (tall ellipses can wrap).
3. Rotation ["Rotate by random degree"]: scipy.ndimage.rotate of the 0/1 float image by
   U(0, 180) degrees, reshape=False, defaults otherwise (cubic spline, order 3, mode 'constant',
   cval 0, about the array centre). Same call as the script (which used its alias
   scipy.ndimage.interpolation.rotate).
4. Tile [REG_MIN_SZ2, "Scale down to random region size and place in random tile"]: log2 size
   randint(4, 6), i.e. 16 or 32 px with probability 1/2 each; tile row and column offsets are
   size * randint(0, 32 / size) (one of the four quadrants, uniformly, for 16 px); the rotated
   image is scipy.ndimage.zoom'ed by size / 32 (cubic spline, defaults: corner-aligned sampling,
   grid_mode=False; factor 1 for 32 px tiles, an identity) and written into the tile of a zero image.
5. Pixel dropping [DROP_PROB_MIN, DROP_PROB_MAX, "Drop pixels randomly"]: p ~ U(0.1, 0.33); with
   probability 1/2 the mask is left-right symmetric about the tile's own vertical mid-line (the left
   half of the tile drawn Bernoulli(p), the right half its mirror image), otherwise every tile pixel
   is dropped independently with probability p. Only pixels of the tile are masked (the rest is 0).
6. Binarisation ["Binarize"]: pixel > 0.1 after dropping (a dropped pixel is 0).
   NOTE (not in the study notes): an image with no pixel left is discarded and a new one drawn
   ["Reiterate if image is empty"]; here with fresh parameters too.
7. Closedness score ["Measure closedness"]: |I| / |closing(I)|, the closing being
   scipy.ndimage.binary_closing with its default structure (3x3 cross, 4-connectivity, one
   iteration) of I padded by one False pixel on each side, then cropped back to 32x32. The closing
   contains I, so the score lies in (0, 1].
8. Symmetry score ["Measure symmetry"]: |T AND fliplr(T)| / |T| with T the binary tile (the whole
   image for 32 px tiles, the 16 px quadrant otherwise: the mirror axis is the tile's, not the image's).
9. Labels [POS_NEG_PROPORTION, "Index positive/negative examples for classification"]: PER SPLIT
   (the train set and the test set are ranked separately, each over all of its own generated
   images, and both tasks rank the same images), images are ordered by score with a stable sort
   (ties keep generation order, like Python's sorted); the first int(0.4 n) get label 0, the last
   int(0.4 n) label 1, the rest is dropped. Kept images stay in generation order (the script writes
   its index files in that order and Caffe's ImageData layer reads them with shuffle: false).
   Paper sizes n_train = 25_000, n_test = 5_000 [SETS] give 20_000 / 4_000 labelled images per task.
10. Output: images as uint8 in {0, 1}. The script saved 0/255 PNGs (scipy.misc.imsave) and its nets
   (exp/blob/*/net.prototmp, layer "data_scale") multiply them by 1/255, so the nets saw 0/1 too.

Other differences from the original
- Random numbers: one numpy Generator (default_rng(seed)) serves the train split, then the test
  split, as the script's single np.random.seed(0) stream did; but draws are made per parameter for
  a whole batch, not per image, and the legacy RandomState stream is not replayed, so the images are
  a different realisation of the same distribution. Bernoulli draws are uniform < p (the script:
  np.random.binomial(1, p)), the same law.
- Interpolation: rotate and zoom are the same scipy.ndimage calls, but SciPy 1.6 reworked the
  boundary handling of the spline interpolators (mode 'constant'); the 2016 script ran an older
  SciPy (requirements.txt: scipy>=0.14.1). Sub-threshold differences of spline values within about a
  pixel of the array border may therefore flip a few border pixels relative to the original's
  SciPy; the interior is unaffected. No scikit-image function is actually called by the script
  (it imports skimage.measure without using it).
- Nothing is written to disk (the script wrote PNGs, list.csv, index_{cls,sym}.txt and histograms);
  results are memoised in-process and returned read-only.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

TASKS = ("closedness", "symmetry")

SIZE = 32                                    # 2 ** IM_SZ2
ELLIPSE_MIN_HEIGHT_LOG2 = 3.5                # ELLP_MIN_HGT2
WARP_MAX_AMPLITUDE = 4.0                     # WARP_SIN_MAX_AMP
WARP_MAX_FREQUENCY = 3 * (2 * np.pi / SIZE)  # WARP_SIN_MAX_FREQ
TILE_LOG2_SIZES = (4, 5)                     # REG_MIN_SZ2 .. IM_SZ2
DROP_PROB_RANGE = (0.1, 0.33)                # DROP_PROB_MIN, DROP_PROB_MAX
BINARY_THRESHOLD = 0.1
POS_NEG_PROPORTION = 0.4

_CROSS = ndimage.generate_binary_structure(2, 1)


def _draw_params(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """The random parameters of n images (one entry per image, or per image and pixel for 'drop_u')."""
    tile_log2 = rng.integers(TILE_LOG2_SIZES[0], TILE_LOG2_SIZES[1] + 1, n)
    tile = 2**tile_log2
    n_slots = SIZE // tile
    return {
        "semi_b": (2 ** rng.uniform(ELLIPSE_MIN_HEIGHT_LOG2, np.log2(SIZE), n) / 2).astype(np.int64),
        "amplitude": rng.uniform(0, WARP_MAX_AMPLITUDE, n),
        "frequency": rng.uniform(0, WARP_MAX_FREQUENCY, n),
        "angle": rng.uniform(0, 180.0, n),
        "tile": tile,
        "row0": tile * rng.integers(0, n_slots),
        "col0": tile * rng.integers(0, n_slots),
        "drop_p": rng.uniform(*DROP_PROB_RANGE, n),
        "symmetric_mask": rng.random(n) < 0.5,
        "drop_u": rng.random((n, SIZE, SIZE)),
    }


def _render(params: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 32, 32) bool and their drop masks (n, 32, 32) bool from _draw_params' output."""
    n = len(params["semi_b"])
    ar = np.arange(SIZE)
    centre = SIZE / 2 - 0.5
    # 1. ellipse, x along columns, y along rows
    ellipse = ((ar[None, None, :] - centre) / (SIZE // 2)) ** 2 \
        + ((ar[None, :, None] - centre) / params["semi_b"][:, None, None]) ** 2 < 1
    # 2. column i rolled (circularly) down by int(A sin(f i)): out[r, i] = in[(r - shift_i) mod 32, i]
    shift = (params["amplitude"][:, None] * np.sin(params["frequency"][:, None] * ar[None, :])).astype(np.int64)
    rows = (ar[None, :, None] - shift[:, None, :]) % SIZE
    warped = np.take_along_axis(ellipse, rows, axis=1).astype(np.float64)
    # 3.-4. rotate, shrink into the tile (per image: each has its own angle and zoom)
    placed = np.zeros((n, SIZE, SIZE))
    for k in range(n):
        rotated = ndimage.rotate(warped[k], params["angle"][k], reshape=False)
        t, r0, c0 = int(params["tile"][k]), int(params["row0"][k]), int(params["col0"][k])
        placed[k, r0:r0 + t, c0:c0 + t] = ndimage.zoom(rotated, t / SIZE)
    # 5. drop mask in tile coordinates; a symmetric one reads its right half from the mirrored column
    tile = params["tile"][:, None, None]
    local_r = ar[None, :, None] - params["row0"][:, None, None]
    local_c = ar[None, None, :] - params["col0"][:, None, None]
    inside = (local_r >= 0) & (local_r < tile) & (local_c >= 0) & (local_c < tile)
    mirrored = params["symmetric_mask"][:, None, None] & (local_c >= tile // 2)
    source_c = np.where(mirrored, tile - 1 - local_c, local_c)
    u = params["drop_u"][np.arange(n)[:, None, None], np.clip(local_r, 0, SIZE - 1), np.clip(source_c, 0, SIZE - 1)]
    drop = inside & (u < params["drop_p"][:, None, None])
    # 6. binarise after dropping
    images = (placed * ~drop) > BINARY_THRESHOLD
    return images, drop


def _closedness(images: np.ndarray) -> np.ndarray:
    """|I| / |binary_closing(I)| per image, the closing (3x3 cross) taken on I padded by one False pixel."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    closed = ndimage.binary_closing(padded, structure=_CROSS[None])[:, 1:-1, 1:-1]
    return images.sum((1, 2)) / closed.sum((1, 2))


def _symmetry(images: np.ndarray, col0: np.ndarray, tile: np.ndarray) -> np.ndarray:
    """|T & fliplr(T)| / |T| per image, T its tile; the image is zero outside the tile."""
    ar = np.arange(SIZE)
    mirror_c = (2 * col0[:, None] + tile[:, None] - 1 - ar[None, :]) % SIZE        # (n, 32)
    flipped = np.take_along_axis(images, np.broadcast_to(mirror_c[:, None, :], images.shape), axis=2)
    return (images & flipped).sum((1, 2)) / images.sum((1, 2))


def _split(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n non-empty images (bool) with their closedness and symmetry scores."""
    images, col0, tile = [], [], []
    missing = n
    while missing > 0:
        params = _draw_params(rng, missing)
        batch, _ = _render(params)
        keep = batch.any((1, 2))
        images.append(batch[keep])
        col0.append(params["col0"][keep])
        tile.append(params["tile"][keep])
        missing -= int(keep.sum())
    x = np.concatenate(images) if images else np.zeros((0, SIZE, SIZE), bool)
    col0_all = np.concatenate(col0) if col0 else np.zeros(0, np.int64)
    tile_all = np.concatenate(tile) if tile else np.zeros(0, np.int64)
    return x, _closedness(x), _symmetry(x, col0_all, tile_all)


def _labels(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (generation order) and labels of the lowest and highest int(0.4 n) scores of one split."""
    n = len(scores)
    m = int(n * POS_NEG_PROPORTION)
    order = np.argsort(scores, kind="stable")
    label = np.full(n, -1, np.int64)
    label[order[:m]] = 0
    label[order[n - m:]] = 1
    kept = np.flatnonzero(label >= 0)
    return kept, label[kept]


@functools.lru_cache(maxsize=4)
def _dataset(n_train: int, n_test: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Both splits, generated (all images, before labelling) with scores; shared by the two tasks."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):          # train first, as the script did
        x, closedness, symmetry = _split(rng, n)
        for a in (x, closedness, symmetry):
            a.flags.writeable = False
        out[name] = (x, closedness, symmetry)
    return out


@functools.lru_cache(maxsize=8)
def generate(task: str, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train (n, 32, 32) uint8 in {0, 1}, y_train (n,) int64 in {0, 1}, x_test, y_test for a task.

    n_train and n_test count the generated images; the middle 20% of each split's scores is then
    dropped (labels thresholded per split), leaving 2 * int(0.4 n) images: 25_000 / 5_000 give the
    paper's 20_000 / 4_000. The same (n_train, n_test, seed) gives the same images for both tasks.
    Seeded and deterministic; memoised; the arrays are read-only (copy them to modify).
    """
    if task not in TASKS:
        raise ValueError(f"unknown blob task {task!r}; valid tasks: {', '.join(TASKS)}")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    data = _dataset(int(n_train), int(n_test), int(seed))
    out = []
    for name in ("train", "test"):
        x, closedness, symmetry = data[name]
        kept, y = _labels(closedness if task == "closedness" else symmetry)
        x_kept = x[kept].astype(np.uint8)
        for a in (x_kept, y):
            a.flags.writeable = False
        out += [x_kept, y]
    return tuple(out)
