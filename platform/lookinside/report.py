"""`lookinside report`: a study's figures as PNG and an index.html beside a table of the sweep.

Everything here is drawn from the Arrow tables in the results store, nothing else."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence

import matplotlib
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lookinside.errors import UserError
from lookinside.results import TRIALS, ResultsError, Store
from lookinside.study import Figure, Study
from lookinside.trials import TRIALS_SCHEMA, all_schemas

matplotlib.use("Agg")


def load_sweeps(study: Study, root: str, sweeps: Sequence[str] | None = None,
                figure_columns_only: bool = True) -> tuple[list[str], dict[str, pa.Table]]:
    """The ids and tables of some sweeps of `study`: None for the latest, ["all"] for every
    one, else the ids given. With figure_columns_only, study tables hold only the columns its
    figures read (when the study names them: `Study.figure_columns`)."""
    store = Store(root)
    known = store.sweeps(study.name)
    if not known:
        # Loading says why: no root, a file for a root, or no results of this study.
        store.load(study.name, TRIALS)
        raise ResultsError(f"no results for study {study.name} under {root}")
    if not sweeps:
        sweeps = [known[-1]]
    elif list(sweeps) == ["all"]:
        sweeps = known
    for sweep_id in sweeps:
        if sweep_id not in known:
            raise ResultsError(f"no sweep {sweep_id} of study {study.name} under {root}; known: {', '.join(known)}")
    sweeps = list(dict.fromkeys(sweeps))
    wanted = (study.figure_columns or {}) if figure_columns_only else {}
    tables = {}
    # `trials` first: its ids tell the other tables' loads which rows are committed.
    schemas = all_schemas(study)
    for name, schema in [(TRIALS, schemas.pop(TRIALS)), *schemas.items()]:
        columns = wanted.get(name)
        present = [s for s in sweeps if name == TRIALS or store.exists(store.partition_dir(study.name, name, s))]
        if not present:
            # A sweep whose every trial failed has a `trials` table and nothing else.
            empty = schema.empty_table().append_column("sweep_id", pa.array([], pa.string()))
            tables[name] = empty.select(["trial_id", *columns, "sweep_id"]) if columns else empty
        else:
            ids = None if name == TRIALS else tables[TRIALS]["trial_id"].combine_chunks()
            tables[name] = store.load(study.name, name, present, schema, committed_ids=ids,
                                      columns=None if columns is None else ["trial_id", *columns])
    return sweeps, tables


def load_sweep(study: Study, root: str, sweep_id: str | None = None) -> tuple[str, dict[str, pa.Table]]:
    """The id and every table of one sweep (the latest when `sweep_id` is None)."""
    sweeps, tables = load_sweeps(study, root, None if sweep_id is None else [sweep_id], figure_columns_only=False)
    return sweeps[0], tables


def build(study: Study, root: str, base: str, sweeps: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """Draws the figures and writes index.html in a folder of its own under `base`:
    base/<sweep_id>/ for one sweep (and base/latest pointing at the newest sweep reported),
    base/all/ for --sweep all, base/<id>+<id>/ for several; returns the index's path and a
    note for each sweep shown that is still running or did not finish. Figures are drawn
    in a scratch folder and moved in one by one, index.html last, so that an interrupted
    report leaves the previous one whole."""
    _check_out(base)
    everything = list(sweeps or []) == ["all"]
    sweeps, tables = load_sweeps(study, root, sweeps)
    name = "all" if everything else "+".join(sweeps)
    out = os.path.join(base, name)
    _check_out(out)
    notes = progress_notes(study, root, sweeps, tables[TRIALS])
    described = describe_sweeps(study, root, sweeps, tables[TRIALS])
    findings = study.findings(tables) if study.findings is not None else []
    os.makedirs(out, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".drawing-", dir=out)
    try:
        figures = study.figures(tables, scratch)
        trials = _trials_view(tables[TRIALS], several=len(sweeps) > 1)
        if study.summary is not None:
            trials = _join(trials, study.summary(tables))
        page = _page(study, sweeps, root, figures, trials, notes, described, findings)
        for drawn in os.listdir(scratch):
            os.replace(os.path.join(scratch, drawn), os.path.join(out, drawn))
        index = os.path.join(out, "index.html")
        with open(index + ".tmp", "w") as f:
            f.write(page)
        os.replace(index + ".tmp", index)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len(sweeps) == 1 and not everything:
        _point_latest(base, name)
    return index, notes


def _point_latest(base: str, name: str) -> None:
    """base/latest -> the report of the newest sweep reported so far (sweep ids sort by time)."""
    latest = os.path.join(base, "latest")
    if os.path.islink(latest) and os.readlink(latest) > name:
        return
    if os.path.exists(latest) and not os.path.islink(latest):
        return                       # the user's own file or folder: left alone
    temporary = f"{latest}.{os.getpid()}.tmp"
    os.symlink(name, temporary)
    os.replace(temporary, latest)


def describe_sweeps(study: Study, root: str, sweeps: Sequence[str], trials: pa.Table) -> list[str]:
    """Per sweep: its preset and overrides (from its manifest); then the config fields
    that every trial shown shares."""
    from lookinside import manifest as manifest_io

    store = Store(root)
    lines = []
    for sweep_id in sweeps:
        try:
            m = manifest_io.read(store, study.name, sweep_id)
        except ResultsError:
            lines.append(f"{sweep_id}: no manifest")
            continue
        lines.append(f"{sweep_id}: preset {m.get('preset')}, {len(m['trials'])} trials, "
                     f"{overrides(m) or 'no overrides'}")
    platform_columns = set(TRIALS_SCHEMA.names) | {"sweep_id"}
    fixed = [f"{c}={_fmt(trials[c][0].as_py())}" for c in trials.column_names
             if c not in platform_columns and trials.num_rows and pc.count_distinct(trials[c]).as_py() == 1]
    if fixed:
        lines.append("fixed in every trial: " + ", ".join(fixed))
    return lines


def overrides(manifest: dict) -> str:
    """A sweep's --set and --grid flags, as the user gave them."""
    flags = [f"--set {k}={_value(v)}" for k, v in manifest.get("values", {}).items()]
    flags += [f"--grid {k}={','.join(_value(x) for x in v)}" for k, v in manifest.get("grid", {}).items()]
    return " ".join(flags)


def _value(v) -> str:
    return "-".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


def progress_notes(study: Study, root: str, sweeps: Sequence[str], trials: pa.Table) -> list[str]:
    """A line for each sweep that is still running or was interrupted, with its count of
    finished trials; none for a sweep whose every trial has its row."""
    from lookinside import lock
    from lookinside import manifest as manifest_io

    store = Store(root)
    notes = []
    for sweep_id in sweeps:
        try:
            total = len(manifest_io.read(store, study.name, sweep_id)["trials"])
        except ResultsError:
            continue          # a sweep written without its manifest: nothing to compare with
        done = pc.sum(pc.equal(trials["sweep_id"], sweep_id)).as_py() or 0
        if done >= total:
            continue
        if lock.running(store, study.name, sweep_id):
            notes.append(f"sweep {sweep_id} is still running: {done} of {total} trials done; "
                         "the figures show those only")
        else:
            notes.append(f"sweep {sweep_id} did not finish: {done} of {total} trials done (continue it with "
                         f"lookinside resume {store.uri_under(study.name, sweep_id)}); the figures show those only")
    return notes


def _check_out(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder")


# --- helpers for a study's figures module ------------------------------------------------

def finished_trials(trials: pa.Table, fields: Sequence[str]) -> pd.DataFrame:
    """The finished trials' ids (and sweep ids) with the config fields figures group by; fields the
    trials do not have (a sweep from before a field existed) are left out."""
    frame = trials.to_pandas()
    frame = frame[frame["status"] == "TERMINATED"]
    return frame[["trial_id", *[f for f in fields if f != "trial_id" and f in frame.columns]]]


def with_config(table: pa.Table, keys: pd.DataFrame) -> pd.DataFrame:
    """A study table's rows joined with their trials' config fields (from `finished_trials`);
    rows of unfinished trials drop out."""
    return table.to_pandas().merge(keys, on="trial_id")


def finished_rows(tables: Mapping[str, pa.Table], table: str, fields: Sequence[str]) -> pd.DataFrame:
    """tables[table]'s rows of finished trials, with those trials' config `fields`."""
    return with_config(tables[table], finished_trials(tables["trials"], fields))


def preset_and_seeds(rows: pd.DataFrame) -> str:
    """'preset laptop · seeds 0, 1, 2': the run a figure shows, for its title."""
    presets = ", ".join(sorted(set(rows["preset"].astype(str)))) if "preset" in rows else "?"
    return f"preset {presets} · seeds {', '.join(map(str, sorted(set(rows['seed']))))}"


def save_figure(fig, out: str, filename: str, title: str, caption: str, **savefig) -> Figure:
    """Saves a matplotlib figure as out/filename (PNG), closes it, and returns its entry
    for the report; `caption` should say what this run's data show."""
    import matplotlib.pyplot as plt

    fig.savefig(os.path.join(out, filename), **{"dpi": 110, "bbox_inches": "tight", **savefig})
    plt.close(fig)
    return Figure(filename, title, caption)


def _trials_view(trials: pa.Table, several: bool = False) -> pa.Table:
    """trial_id, (sweep_id,) status, attempt, the config fields that vary, error."""
    platform_columns = set(TRIALS_SCHEMA.names) | {"sweep_id"}
    varying = [c for c in trials.column_names if c not in platform_columns
               and pc.count_distinct(trials[c]).as_py() > 1]
    columns = ["trial_id", *(["sweep_id"] if several else []), "status", "attempt"] + varying + ["error"]
    return trials.select(columns).sort_by("trial_id")


def _join(trials: pa.Table, summary: pa.Table) -> pa.Table:
    summary = summary.cast(pa.schema([f.with_type(pa.string()) if f.name == "trial_id" else f
                                      for f in summary.schema]))
    return trials.join(summary, "trial_id", join_type="left outer").sort_by("trial_id")


def _page(study: Study, sweeps: list[str], root: str, figures, trials: pa.Table, notes: list[str],
          described: list[str], findings: list[str]) -> str:
    counts = pc.value_counts(trials["status"]).to_pylist()
    status = ", ".join(f"{c['counts']} {c['values']}" for c in counts)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(study.name)} {html.escape(', '.join(sweeps))}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "figure{display:inline-block;margin:1em;vertical-align:top;max-width:560px}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.ERROR{background:#fdd}.note{background:#ffd;padding:4px}"
        "</style></head><body>",
        f"<h1>{html.escape(study.title)}</h1>",
        f"<p>{'Sweeps' if len(sweeps) > 1 else 'Sweep'} "
        f"{', '.join(f'<code>{html.escape(s)}</code>' for s in sweeps)} under <code>{html.escape(str(root))}</code>: "
        f"{trials.num_rows} trials ({html.escape(status)}).</p>",
        *(f"<p class='note'><b>Note:</b> {html.escape(n)}.</p>" for n in notes),
        "<ul>", *(f"<li>{html.escape(line)}</li>" for line in described), "</ul>",
    ]
    if findings:
        parts += ["<h2>Findings</h2><ul>", *(f"<li>{html.escape(line)}</li>" for line in findings), "</ul>"]
    for fig in figures:
        parts.append(f"<figure><a href='{html.escape(fig.filename)}'>"
                     f"<img src='{html.escape(fig.filename)}' alt='{html.escape(fig.title)}'></a>"
                     f"<figcaption><b>{html.escape(fig.title)}.</b> {html.escape(fig.caption)}"
                     "</figcaption></figure>")
    parts.append("<h2>Trials</h2><table><tr>")
    parts.extend(f"<th>{html.escape(c)}</th>" for c in trials.column_names)
    parts.append("</tr>")
    for row in trials.to_pylist():
        parts.append(f"<tr class='{html.escape(str(row['status']))}'>")
        parts.extend(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values())
        parts.append("</tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
