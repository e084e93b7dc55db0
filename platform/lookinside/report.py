"""`lookinside report`: a study's figures as PNG and an index.html beside a table of the sweep.

Everything here is drawn from the Arrow tables in the results store, nothing else."""

from __future__ import annotations

import html
import os

import matplotlib
import pyarrow as pa
import pyarrow.compute as pc

from lookinside.results import TRIALS, TRIALS_SCHEMA, ResultsError, Store
from lookinside.study import Study

matplotlib.use("Agg")


def load_sweep(study: Study, root: str, sweep_id: str | None = None) -> tuple[str, dict[str, pa.Table]]:
    """The id and every table of one sweep (the latest when `sweep_id` is None)."""
    from lookinside.sweep import all_schemas

    store = Store(root)
    sweeps = store.sweeps(study.name)
    if not sweeps:
        # Loading says why: no root, a file for a root, or no results of this study.
        store.load(study.name, TRIALS)
        raise ResultsError(f"no results for study {study.name} under {root}")
    if sweep_id is None:
        sweep_id = sweeps[-1]
    elif sweep_id not in sweeps:
        raise ResultsError(f"no sweep {sweep_id} of study {study.name} under {root}; "
                           f"known: {', '.join(sweeps)}")
    tables = {}
    for name, schema in all_schemas(study).items():
        if name != TRIALS and not store.exists(store.partition_dir(study.name, name, sweep_id)):
            # A sweep whose every trial failed has a `trials` table and nothing else.
            tables[name] = schema.empty_table().append_column("sweep_id", pa.array([], pa.string()))
        else:
            tables[name] = store.load(study.name, name, sweep_id, schema)
    return sweep_id, tables


def build(study: Study, root: str, out: str, sweep_id: str | None = None) -> str:
    sweep_id, tables = load_sweep(study, root, sweep_id)
    os.makedirs(out, exist_ok=True)
    figures = study.figures(tables, out)
    trials = _trials_view(tables[TRIALS])
    if study.summary is not None:
        trials = _join(trials, study.summary(tables))
    page = _page(study, sweep_id, root, figures, trials)
    index = os.path.join(out, "index.html")
    with open(index + ".tmp", "w") as f:
        f.write(page)
    os.replace(index + ".tmp", index)
    return index


def _trials_view(trials: pa.Table) -> pa.Table:
    """trial_id, status, attempt, the config fields that vary across the sweep, error."""
    platform_columns = set(TRIALS_SCHEMA.names) | {"sweep_id"}
    varying = [c for c in trials.column_names if c not in platform_columns
               and pc.count_distinct(trials[c]).as_py() > 1]
    columns = ["trial_id", "status", "attempt"] + varying + ["error"]
    return trials.select(columns).sort_by("trial_id")


def _join(trials: pa.Table, summary: pa.Table) -> pa.Table:
    summary = summary.cast(pa.schema([f.with_type(pa.string()) if f.name == "trial_id" else f
                                      for f in summary.schema]))
    return trials.join(summary, "trial_id", join_type="left outer").sort_by("trial_id")


def _page(study: Study, sweep_id: str, root: str, figures, trials: pa.Table) -> str:
    counts = pc.value_counts(trials["status"]).to_pylist()
    status = ", ".join(f"{c['counts']} {c['values']}" for c in counts)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(study.name)} {html.escape(sweep_id)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}"
        "figure{display:inline-block;margin:1em;vertical-align:top;max-width:560px}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}.ERROR{background:#fdd}</style></head><body>",
        f"<h1>{html.escape(study.title)}</h1>",
        f"<p>Sweep <code>{html.escape(sweep_id)}</code> under <code>{html.escape(str(root))}</code>: "
        f"{trials.num_rows} trials ({html.escape(status)}).</p>",
    ]
    for fig in figures:
        parts.append(f"<figure><img src='{html.escape(fig.filename)}' alt='{html.escape(fig.title)}'>"
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
