"""Figures of the information bottleneck study, drawn from its Arrow tables only.

Every figure has the same layout: tanh left, ReLU right (then any other activation); each
layer one colour and one name (T1..T5 for the hidden layers, "output" for the softmax);
epochs on one axis (symlog: 0, then 1, 10, 100, ...); the spread over seeds drawn (faint
per-seed lines or a min..max band); and the run it shows (training fraction, preset or
epochs, seeds) in its title. Captions are computed from the tables: they say what this
run's data show, not what the papers claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import matplotlib
import numpy as np
import pandas as pd
import pyarrow as pa

from lookinside import report
from lookinside.study import Figure

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
from matplotlib.lines import Line2D  # noqa: E402

ESTIMATOR_TITLES = {"bin_fixed": "binned, fixed range [-1, 1] (IDNNs)",
                    "bin_observed": "binned, observed range (Saxe et al.)",
                    "kde_upper": "KDE upper bound", "kde_lower": "KDE lower bound"}
RANGE_NAMES = {"bin_fixed": "fixed-range", "bin_observed": "observed-range"}
ACTIVATION_ORDER = ("tanh", "relu", "linear")
ACTIVATION_STYLES = {"tanh": {"color": "#222222", "ls": "-"}, "relu": {"color": "#d95f02", "ls": "--"},
                     "linear": {"color": "#7570b3", "ls": ":"}}
BOUNDED = {"tanh"}                 # activations that stay in [-1, 1], the fixed binning range
HIDDEN_COLOURS = plt.get_cmap("tab10").colors       # T1 blue, T2 orange, T3 green, T4 red, T5 purple
OUTPUT_COLOUR = "0.45"
EPOCH_CMAP = "viridis"
FALLS_BITS = 0.1       # a mean peak-to-final fall below this reads as "does not fall"
COINCIDE_BITS = 0.25   # fixed and observed ranges "nearly coincide" below this mean gap (of 0..12 bits)
CLIPPED = "activations above 1 are clipped into the top bin"


def finished_trials(tables: Mapping[str, pa.Table]) -> pd.DataFrame:
    """The finished trials' ids with the config fields that figures group by (and the
    preset, where the trials table records it)."""
    trials = tables["trials"]
    fields = ["activation", "train_fraction", "seed", "hidden", "epochs", "preset"]
    return report.finished_trials(trials, [f for f in fields if f in trials.column_names])


with_keys = report.with_config


# --- shared styling and numbers ----------------------------------------------------------

def ordered_activations(frame: pd.DataFrame) -> list[str]:
    present = set(frame["activation"])
    return [a for a in ACTIVATION_ORDER if a in present] + sorted(present - set(ACTIVATION_ORDER))


def activation_style(activation: str) -> dict:
    return ACTIVATION_STYLES.get(activation, {"color": "#1b9e77", "ls": "-."})


def layer_name(layer: int, output_layer: int) -> str:
    return "output" if layer == output_layer else f"T{layer}"


def layer_colour(layer: int, output_layer: int):
    return OUTPUT_COLOUR if layer == output_layer else HIDDEN_COLOURS[(layer - 1) % len(HIDDEN_COLOURS)]


def layer_legend(fig, info: pd.DataFrame, output: int) -> None:
    """The layers' colours, once for the whole figure, under its panels."""
    fig.legend(handles=layer_handles(set(info["layer"]), output), loc="outside lower center",
               ncols=output, fontsize=8, frameon=False, title="layer", title_fontsize=8)


def layer_handles(layers, output_layer: int, **style) -> list[Line2D]:
    return [Line2D([], [], color=layer_colour(k, output_layer), label=layer_name(k, output_layer), **style)
            for k in sorted(layers)]


def main_fraction(keys: pd.DataFrame) -> float:
    """Figures of one training fraction show the sweep's largest (the paper's 85%)."""
    return float(keys["train_fraction"].max())


def at_fraction(frame: pd.DataFrame, fraction: float) -> pd.DataFrame:
    return frame[np.isclose(frame["train_fraction"], fraction)]


def epoch_axis(ax, last_epoch: int) -> None:
    """The one epoch axis: linear from 0 to 1, logarithmic after, ticks in plain epochs."""
    ax.set_xscale("symlog", linthresh=1, linscale=0.4)
    ax.set_xlim(0, max(last_epoch, 1) * 1.15)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("epoch")


def epoch_colours(fig, axes, last_epoch: int):
    """The epoch colour scale of the information planes (the same symlog as epoch_axis),
    with its colour bar; returns the norm."""
    norm = matplotlib.colors.SymLogNorm(linthresh=1, linscale=0.4, vmin=0, vmax=max(last_epoch, 1), base=10)
    bar = fig.colorbar(matplotlib.cm.ScalarMappable(norm, EPOCH_CMAP), ax=axes, label="epoch", shrink=0.6)
    bar.set_ticks([0] + [10 ** k for k in range(int(np.log10(max(last_epoch, 1))) + 1)])
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    return norm


def run_label(keys: pd.DataFrame, fraction: float | None = None) -> str:
    """What run a figure shows: '85% training data · laptop preset, 1500 epochs · 2 seeds
    per activation' (every fraction of the sweep when `fraction` is None)."""
    if fraction is not None:
        keys = at_fraction(keys, fraction)
        data = f"{fraction:.0%} training data"
    else:
        data = "training data " + ", ".join(f"{f:.0%}" for f in sorted(set(keys["train_fraction"])))
    epochs = "/".join(str(e) for e in sorted(set(keys["epochs"]))) if "epochs" in keys else "?"
    presets = sorted(set(keys["preset"].dropna())) if "preset" in keys else []
    length = f"{'/'.join(presets)} preset, {epochs} epochs" if presets else f"{epochs} epochs"
    seeds = keys.groupby(["activation", "train_fraction"])["seed"].nunique()
    if seeds.min() == seeds.max():
        per = "per activation" if fraction is not None else "per panel"
        n_seeds = f"{seeds.min()} seed{'s' if seeds.min() > 1 else ''} {per}"
    else:
        n_seeds = f"{seeds.min()}-{seeds.max()} seeds per panel"
    return f"{data} · {length} · {n_seeds}"


def seed_band(ax, frame: pd.DataFrame, value: str, label: str | None = None, **style) -> pd.Series:
    """The mean over seeds of `value` against epoch, with the min..max over seeds shaded;
    returns the mean."""
    per_seed = frame.pivot_table(index="epoch", columns="seed", values=value).sort_index()
    mean = per_seed.mean(axis=1)
    x = per_seed.index.to_numpy()
    ax.plot(x, mean, label=label, lw=1.4, **style)
    ax.fill_between(x, per_seed.min(axis=1), per_seed.max(axis=1), color=style.get("color"), alpha=0.15, lw=0)
    return mean


@dataclasses.dataclass(frozen=True)
class Fall:
    """How far a quantity falls from its peak by the last epoch, in bits."""
    drop: float          # mean over seeds of (peak - final)
    low: float           # smallest and largest over seeds
    high: float
    peak_epoch: int      # the seed-mean curve's peak
    final: float         # the seed-mean curve's last value

    @property
    def falls(self) -> bool:
        return self.drop >= FALLS_BITS


def fall(frame: pd.DataFrame, value: str = "i_xt") -> Fall:
    """The Fall of `value` in one layer's rows (epoch, seed, value) under one estimator."""
    per_seed = frame.pivot_table(index="epoch", columns="seed", values=value).sort_index()
    drops = per_seed.max() - per_seed.ffill().iloc[-1]
    mean = per_seed.mean(axis=1)
    return Fall(float(drops.mean()), float(drops.min()), float(drops.max()), int(mean.idxmax()),
                float(mean.iloc[-1]))


def describe_fall(f: Fall, what: str) -> str:
    if f.falls:
        spread = f" (seeds {f.low:.2f}-{f.high:.2f})" if f.high > f.low else ""
        return f"{what} falls by {f.drop:.2f} bits after epoch {f.peak_epoch}{spread}"
    return f"{what} does not fall (peak to end {f.drop:.2f} bits; ends at {f.final:.2f} bits)"


def range_gap(info: pd.DataFrame, activation: str) -> float | None:
    """Mean |I(X;T) fixed - I(X;T) observed| over an activation's rows, in bits."""
    rows = info[info["activation"] == activation]
    pair = rows.pivot_table(index=["trial_id", "layer", "epoch"], columns="estimator", values="i_xt")
    if not {"bin_fixed", "bin_observed"} <= set(pair.columns):
        return None
    return float((pair["bin_fixed"] - pair["bin_observed"]).abs().mean())


def _range_gap_sentence(activation: str, gap: float, what: str) -> str:
    if gap < COINCIDE_BITS:
        return f"{activation} stays in [-1, 1], so its two {what} nearly coincide (mean gap {gap:.2f} bits)."
    return f"{activation} stays in [-1, 1], yet its two {what} differ by {gap:.2f} bits on average."


def panel_notes(info: pd.DataFrame) -> dict[tuple[str, str], str]:
    """A word under a panel's title where its estimator misleads or needs its reason:
    keyed by (activation, estimator)."""
    notes = {}
    output = int(info["layer"].max())
    for act in ordered_activations(info):
        if act not in BOUNDED:
            notes[(act, "bin_fixed")] = f"artefact: {CLIPPED}"
            out = info[(info["activation"] == act) & (info["estimator"] == "bin_observed")
                       & (info["layer"] == output)]
            if not out.empty and fall(out).falls:
                notes[(act, "bin_observed")] = "output falls: a softmax saturates, like tanh"
        else:
            gap = range_gap(info, act)
            if gap is not None and gap < COINCIDE_BITS:
                notes[(act, "bin_observed")] = f"{act} stays in [-1, 1]: both ranges nearly coincide"
    return notes


def plane_panel(ax, frame: pd.DataFrame, norm, output_layer: int) -> None:
    """One information plane: per layer, each seed's path (faint) and the seed mean's path
    (the layer's colour) with its points coloured by epoch."""
    for layer, g in frame.groupby("layer"):
        colour = layer_colour(layer, output_layer)
        for _, s in g.groupby("seed"):
            s = s.sort_values("epoch")
            ax.plot(s["i_xt"], s["i_ty"], color=colour, lw=0.6, alpha=0.3, zorder=1)
        mean = g.groupby("epoch")[["i_xt", "i_ty"]].mean()
        ax.plot(mean["i_xt"], mean["i_ty"], color=colour, lw=1.5, zorder=2)
        ax.scatter(mean["i_xt"], mean["i_ty"], c=mean.index, cmap=EPOCH_CMAP, norm=norm, s=9, zorder=3,
                   edgecolors=colour, linewidths=0.8)
    ax.set_xlabel("I(X;T) [bits]")
    ax.set_ylabel("I(T;Y) [bits]")


def panel_title(ax, title: str, note: str | None) -> None:
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=9)


# --- the figures ---------------------------------------------------------------------------

def information_plane(tables, out: str) -> list[Figure]:
    """Every layer's I(X;T) against I(T;Y): one row per estimator, one column per activation."""
    keys = finished_trials(tables)
    fraction = main_fraction(keys)
    info = at_fraction(with_keys(tables["information"], keys), fraction)
    estimators = [e for e in ESTIMATOR_TITLES if e in set(info["estimator"])]
    if not estimators:
        return []
    activations = ordered_activations(info)
    output = int(info["layer"].max())
    notes = panel_notes(info)
    fig, axes = plt.subplots(len(estimators), len(activations), squeeze=False, layout="constrained",
                             figsize=(4.2 * len(activations) + 1.2, 3.3 * len(estimators) + 0.8))
    norm = epoch_colours(fig, axes, int(info["epoch"].max()))
    for r, est in enumerate(estimators):
        for c, act in enumerate(activations):
            sub = info[(info["estimator"] == est) & (info["activation"] == act)]
            plane_panel(axes[r][c], sub, norm, output)
            panel_title(axes[r][c], f"{act} · {ESTIMATOR_TITLES[est]}", notes.get((act, est)))
    layer_legend(fig, info, output)
    fig.suptitle(f"Information plane · {run_label(keys, fraction)}", fontsize=10)
    return [report.save_figure(fig, out, "information_plane.png", "Information plane",
                               f"Each layer's I(X;T) against I(T;Y) over training: the mean over seeds in the "
                               f"layer's colour, points coloured by epoch, each seed's path faint; "
                               f"{run_label(keys, fraction)}. {_plane_findings(info, output)}",
                               bbox_inches=None)]


def _plane_findings(info: pd.DataFrame, output: int) -> str:
    """Which layers' I(X;T) fall from their peak, per activation, under each binning."""
    sentences = []
    for act in ordered_activations(info):
        parts = []
        for est in ("bin_observed", "bin_fixed"):
            rows = info[(info["activation"] == act) & (info["estimator"] == est)]
            if rows.empty:
                continue
            falling = [layer_name(k, output) for k, g in rows.groupby("layer") if fall(g).falls]
            which = ", ".join(falling) if falling else "no layer"
            artefact = f" (an artefact: {CLIPPED})" if act not in BOUNDED and est == "bin_fixed" and falling else ""
            parts.append(f"under {RANGE_NAMES[est]} binning I(X;T) falls in {which}{artefact}")
        if parts:
            sentences.append(f"{act}: " + "; ".join(parts) + ".")
        gap = range_gap(info, act)
        if act in BOUNDED and gap is not None:
            sentences.append(_range_gap_sentence(act, gap, "binnings"))
        out = info[(info["activation"] == act) & (info["estimator"] == "bin_observed") & (info["layer"] == output)]
        if act not in BOUNDED and not out.empty and fall(out).falls:
            sentences.append(f"The {act} net's output falls under observed-range binning too: it is a softmax, "
                             "which saturates like tanh, not a ReLU layer.")
    return " ".join(sentences)


def compression(tables, out: str) -> list[Figure]:
    """The last hidden layer's I(X;T) against epoch, under both binning rules: where the tanh
    vs ReLU dispute shows."""
    keys = finished_trials(tables)
    fraction = main_fraction(keys)
    info = at_fraction(with_keys(tables["information"], keys), fraction)
    estimators = [e for e in RANGE_NAMES if e in set(info["estimator"])]
    if not estimators:
        return []
    info = info[info["estimator"].isin(estimators)]
    last_hidden = int(info["layer"].max()) - 1
    notes = panel_notes(info)
    layer = info[info["layer"] == last_hidden]
    activations = ordered_activations(layer)
    fig, axes = plt.subplots(1, len(estimators), squeeze=False, sharey=True, layout="constrained",
                             figsize=(4.6 * len(estimators), 4.0))
    falls = {}
    for ax, est in zip(axes[0], estimators):
        for act in activations:
            rows = layer[(layer["estimator"] == est) & (layer["activation"] == act)]
            seed_band(ax, rows, "i_xt", label=act, **activation_style(act))
            falls[(act, est)] = fall(rows)
        epoch_axis(ax, int(layer["epoch"].max()))
        # Both activations share a panel here: each note names the one it is about.
        note = "; ".join(f"{a}: {n}" if not n.startswith(a) else n
                         for (a, e), n in notes.items() if e == est and "output" not in n)
        panel_title(ax, ESTIMATOR_TITLES[est], note)
        ax.legend(fontsize=8, title=f"T{last_hidden}", title_fontsize=8)
    axes[0][0].set_ylabel(f"I(X;T{last_hidden}) [bits]")
    fig.suptitle(f"Last hidden layer T{last_hidden} · {run_label(keys, fraction)}", fontsize=10)
    return [report.save_figure(fig, out, "compression.png", "Compression in the last hidden layer",
                               f"I(X;T{last_hidden}) against epoch under each binning rule; line: mean over "
                               f"seeds, band: range over seeds; {run_label(keys, fraction)}. "
                               + _compression_findings(falls, f"T{last_hidden}", info))]


def _compression_findings(falls: dict[tuple[str, str], Fall], layer: str, info: pd.DataFrame) -> str:
    sentences = []
    for act in ordered_activations(info):
        parts = []
        for est in RANGE_NAMES:
            if (act, est) not in falls:
                continue
            f = falls[(act, est)]
            text = describe_fall(f, f"under {RANGE_NAMES[est]} binning {layer}")
            if act not in BOUNDED and est == "bin_fixed" and f.falls:
                text += f", an artefact: {CLIPPED}"
            parts.append(text)
        sentences.append(f"{act}: " + "; ".join(parts) + ".")
        gap = range_gap(info, act)
        if act in BOUNDED and gap is not None:
            sentences.append(_range_gap_sentence(act, gap, "panels"))
    return " ".join(sentences)


def gradients(tables, out: str) -> list[Figure]:
    """Per layer, the gradient's mean and std norms and their ratio against epoch, with the
    drift-to-diffusion transition marked."""
    # Imported here: findings imports this module.
    from lookinside.studies.information_bottleneck.findings import transition_epochs

    keys = finished_trials(tables)
    fraction = main_fraction(keys)
    grads = at_fraction(with_keys(tables["gradients"], keys), fraction)
    if grads.empty:
        return []
    grads = grads.assign(snr=(grads["grad_mean_norm"] / grads["grad_std_norm"]).replace([np.inf, -np.inf], np.nan))
    transitions = _transitions(transition_epochs(grads))
    activations = ordered_activations(grads)
    output, last = int(grads["layer"].max()), int(grads["epoch"].max())
    fig, axes = plt.subplots(2, len(activations), squeeze=False, sharex=True, sharey="row", layout="constrained",
                             figsize=(4.8 * len(activations) + 1.4, 7.0))
    for c, act in enumerate(activations):
        norms, ratio = axes[0][c], axes[1][c]
        for layer, g in grads[grads["activation"] == act].groupby("layer"):
            colour = layer_colour(layer, output)
            seed_band(norms, g, "grad_mean_norm", color=colour, ls="-")
            seed_band(norms, g, "grad_std_norm", color=colour, ls="--")
            snr = seed_band(ratio, g, "snr", color=colour, ls="-")
            epoch = transitions.get((act, layer))
            if epoch is not None:
                for ax in (norms, ratio):
                    ax.axvline(epoch, color=colour, ls=":", lw=1.2)
                at = snr.index[np.searchsorted(snr.index, epoch).clip(max=len(snr) - 1)]
                ratio.plot([at], [snr.loc[at]], "o", color=colour, ms=6, mec="k", mew=0.6, zorder=4)
        ratio.axhline(1, color="k", lw=0.8)
        ratio.text(0.02, 0.97, "drift: mean > std", transform=ratio.transAxes, va="top", fontsize=7)
        ratio.text(0.02, 0.03, "diffusion: std > mean", transform=ratio.transAxes, va="bottom", fontsize=7)
        norms.set_title(act, fontsize=10)
        for ax in (norms, ratio):
            ax.set_yscale("log")
            epoch_axis(ax, last)
        norms.set_xlabel("")
    axes[0][0].set_ylabel("L2 norm over the layer's weights of the\nper-epoch mean (solid) / elementwise "
                          "std (dashed)\nof the batch gradients")
    axes[1][0].set_ylabel("signal-to-noise:\nnorm of mean / norm of std")
    style = [Line2D([], [], color="k", ls="-", label="mean"), Line2D([], [], color="k", ls="--", label="std"),
             Line2D([], [], color="k", ls=":", marker="o", label="drift to\ndiffusion")]
    fig.legend(handles=layer_handles(set(grads["layer"]), output) + style, loc="outside right center",
               fontsize=8, frameon=False)
    fig.suptitle(f"Gradient signal and noise · {run_label(keys, fraction)}", fontsize=10)
    return [report.save_figure(fig, out, "gradients.png", "Gradient signal and noise",
                               "Per layer, the L2 norm over its weights of the mean (solid) and of the "
                               "elementwise std (dashed) of the gradients of the batches trained on in each "
                               "epoch, and below their ratio; line: mean over seeds, band: range over seeds; "
                               f"{run_label(keys, fraction)}. "
                               + _gradient_findings(transitions, activations, sorted(set(grads["layer"])), output))]


def _transitions(frame: pd.DataFrame) -> dict[tuple[str, int], int]:
    """findings.transition_epochs' rows as {(activation, layer): epoch}, without layers that
    have none."""
    if not {"activation", "layer", "epoch"} <= set(frame.columns):
        frame = frame.reset_index()
    frame = frame.dropna(subset=["epoch"])
    return {(a, int(k)): int(e) for a, k, e in zip(frame["activation"], frame["layer"], frame["epoch"])}


def _gradient_findings(transitions, activations, layers, output) -> str:
    sentences = []
    for act in activations:
        found = [f"{transitions[(act, k)]} in {layer_name(k, output)}" for k in layers if (act, k) in transitions]
        missing = [layer_name(k, output) for k in layers if (act, k) not in transitions]
        text = f"{act}: drift turns to diffusion (dotted) at epoch " + ", ".join(found) if found else \
            f"{act}: no layer turns from drift to diffusion"
        if found and missing:
            text += f"; not in {', '.join(missing)}"
        sentences.append(text + ".")
    return " ".join(sentences)


def train_fractions(tables, out: str) -> list[Figure]:
    """Information planes for each training fraction: one row per activation."""
    keys = finished_trials(tables)
    fractions = sorted(set(keys["train_fraction"]))
    if len(fractions) < 2:
        return []
    info = with_keys(tables["information"], keys)
    # Observed-range binning: the fixed range clips ReLU, and for tanh the two nearly coincide.
    est = "bin_observed" if "bin_observed" in set(info["estimator"]) else "bin_fixed"
    info = info[info["estimator"] == est]
    if info.empty:
        return []
    activations = ordered_activations(info)
    output = int(info["layer"].max())
    fig, axes = plt.subplots(len(activations), len(fractions), squeeze=False, sharex=True, sharey=True,
                             layout="constrained", figsize=(3.8 * len(fractions) + 1.2, 3.3 * len(activations) + 0.8))
    norm = epoch_colours(fig, axes, int(info["epoch"].max()))
    for r, act in enumerate(activations):
        for c, fraction in enumerate(fractions):
            sub = at_fraction(info[info["activation"] == act], fraction)
            plane_panel(axes[r][c], sub, norm, output)
            note = f"artefact: {CLIPPED}" if est == "bin_fixed" and act not in BOUNDED else None
            panel_title(axes[r][c], f"{act} · {fraction:.0%} training data", note)
            axes[r][c].label_outer()
    layer_legend(fig, info, output)
    fig.suptitle(f"Training-set size · {ESTIMATOR_TITLES[est]} · {run_label(keys)}", fontsize=10)
    return [report.save_figure(fig, out, "train_fractions.png", "Training-set size",
                               f"Information planes for each training fraction ({ESTIMATOR_TITLES[est]}); "
                               f"mean over seeds in each layer's colour, points coloured by epoch, seeds faint; "
                               f"{run_label(keys)}. " + _fraction_findings(tables, keys, info, output),
                               bbox_inches=None)]


def _fraction_findings(tables, keys: pd.DataFrame, info: pd.DataFrame, output: int) -> str:
    """Per activation and fraction: the last hidden layer's I(T;Y) fall (overfitting) and
    the final test accuracy."""
    metrics = with_keys(tables["metrics"], keys)
    final = metrics[metrics["epoch"] == metrics.groupby("trial_id")["epoch"].transform("max")]
    accuracy = final.groupby(["activation", "train_fraction"])["test_acc"].mean()
    layer = f"T{output - 1}"
    sentences = []
    for act in ordered_activations(info):
        parts = []
        for fraction, rows in info[(info["activation"] == act) & (info["layer"] == output - 1)].groupby(
                "train_fraction"):
            f = fall(rows, "i_ty")
            what = f"falls by {f.drop:.2f} bits after epoch {f.peak_epoch}" if f.falls else \
                f"does not fall (peak to end {f.drop:.2f} bits)"
            acc = accuracy.get((act, fraction))
            parts.append(f"with {fraction:.0%} data {what}" + (f", test accuracy {acc:.2f}" if acc is not None else ""))
        sentences.append(f"{act}: {layer}'s I(T;Y) " + "; ".join(parts) + ".")
    return " ".join(sentences)


def draw(tables: Mapping[str, pa.Table], out: str) -> list[Figure]:
    figures = []
    for make in (information_plane, compression, gradients, train_fractions):
        figures += make(tables, out)
    return figures


def summary(tables: Mapping[str, pa.Table]) -> pa.Table:
    """Per trial: final accuracies, and the last hidden layer's peak and final I(X;T) under
    each binning rule, each column named by its layer and estimator."""
    metrics = tables["metrics"].to_pandas()
    info = tables["information"].to_pandas()
    if metrics.empty:
        return pa.table({"trial_id": pa.array([], pa.string())})
    final = metrics.sort_values("epoch").groupby("trial_id").last()[["train_acc", "test_acc"]]
    final.columns = ["final train_acc", "final test_acc"]
    columns = {}
    if not info.empty:
        last_hidden = int(info["layer"].max()) - 1
        rows = info[info["layer"] == last_hidden].sort_values("epoch")
        for est in RANGE_NAMES:
            i_xt = rows[rows["estimator"] == est].groupby("trial_id")["i_xt"]
            if i_xt.ngroups:
                columns[f"T{last_hidden} I(X;T) peak, {est}"] = i_xt.max()
                columns[f"T{last_hidden} I(X;T) final, {est}"] = i_xt.last()
    out = final.join(pd.DataFrame(columns)) if columns else final
    return pa.Table.from_pandas(out.rename_axis("trial_id").reset_index(), preserve_index=False)
