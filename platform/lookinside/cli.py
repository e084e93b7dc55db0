"""The `lookinside` command: list, run, resume, report (DESIGN.md, "Command line")."""

from __future__ import annotations

import argparse
import math
import os
import sys

from lookinside import config as cfg
from lookinside import study as studies
from lookinside.errors import UserError, exit_code

DEFAULT_PRESET = "laptop"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UserError(message)



def findings_sweep(study, module: str, description: str, argv: list[str] | None) -> tuple[str, dict]:
    """The `python -m <module>` findings command of a study: parses --results and --sweep and
    loads that sweep's tables (the latest by default); a UserError (one line) when the
    results cannot be read."""
    import pyarrow as pa

    from lookinside import report
    from lookinside.errors import one_line

    parser = OneLineParser(prog=f"python -m {module}", description=description)
    parser.add_argument("--results", default="./results")
    parser.add_argument("--sweep", default=None, help="sweep id (default: the latest)")
    args = parser.parse_args(argv)
    try:
        return report.load_sweep(study, args.results, args.sweep)
    except (OSError, pa.ArrowException) as err:  # unreadable results the store did not name
        raise UserError(f"cannot read results under {args.results}: {one_line(err)}") from err

def main(argv: list[str] | None = None) -> int:
    return exit_code(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    return args.func(args)


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="lookinside", description="Sweeps of the 'Why & When Deep Learning Works' studies. "
                "`run` takes the laptop preset unless --preset says otherwise.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    s = sub.add_parser("list", help="studies, presets and the number of trials in each preset's grid")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("run", help="run a study's sweep")
    s.add_argument("study")
    s.add_argument("--preset", default=DEFAULT_PRESET,
                   help=f"smoke, laptop or paper (default: {DEFAULT_PRESET}; `lookinside list` shows their sizes)")
    s.add_argument("--results", default="./results", help="results root: a path or an s3:// URI")
    s.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="fix a config field (repeatable; tuples as 10-7-5)")
    s.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="sweep a config field over these values (repeatable; replaces the preset's grid of it)")
    s.add_argument("--address", default=None, help="a Ray cluster's address (default: embedded local Ray)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs of each trial (default 1)")
    s.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs of each trial, a fraction shares one GPU (default 0)")
    s.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial (default 2)")
    s.add_argument("--pack", default="auto",
                   help="members per pack: an integer (1 = one network per trial), or 'auto' (default)")
    s.add_argument("--checkpoint-seconds", type=float, default=60.0,
                   help="a trial saves a checkpoint at most this often (default 60)")
    s.add_argument("--quiet", action="store_true", help="no live progress line")
    s.add_argument("--wait-for-nodes", action="store_true",
                   help="with --address: the cluster autoscales, so wait for nodes that fit the trials "
                        "(without it, a trial no node can hold is an error)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("resume", help="continue an interrupted sweep")
    s.add_argument("sweep", metavar="ROOT/STUDY/SWEEP_ID")
    s.add_argument("--address", default=None, help="a Ray cluster's address (default: embedded local Ray)")
    s.add_argument("--quiet", action="store_true", help="no live progress line")
    s.add_argument("--wait-for-nodes", action="store_true",
                   help="with --address: the cluster autoscales, so wait for nodes that fit the trials")
    s.set_defaults(func=cmd_resume)

    s = sub.add_parser("sweeps", help="a study's sweeps: id, preset, overrides, trials done and failed")
    s.add_argument("study")
    s.add_argument("--results", default="./results", help="results root: a path or an s3:// URI")
    s.set_defaults(func=cmd_sweeps)

    s = sub.add_parser("report", help="figures and an index.html from a study's results")
    s.add_argument("study")
    s.add_argument("--results", default="./results", help="results root: a path or an s3:// URI")
    s.add_argument("--out", default=None,
                   help="folder of the study's reports (default ./report/STUDY); each sweep's report goes to "
                        "OUT/SWEEP_ID/, and OUT/latest points at the newest")
    s.add_argument("--findings", action="store_true", help="also print the study's findings, with their numbers")
    s.add_argument("--sweep", action="append", default=None, metavar="ID",
                   help="a sweep id, repeatable, or 'all' (default: the latest)")
    s.set_defaults(func=cmd_report)
    return p


def cmd_list(args) -> int:
    for name in studies.names():
        study = studies.get(name)
        print(f"{name}: {study.title}")
        for preset_name, preset in study.presets.items():
            default = "  [the default]" if preset_name == DEFAULT_PRESET else ""
            print(f"  {preset_name:<8} {study.grid_size(preset_name):>6} trials  {preset.description}{default}")
    return 0


def _assignments(study, items: list[str], grid: bool) -> dict:
    out = {}
    flag = "--grid" if grid else "--set"
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UserError(f"expected {flag} {'FIELD=V1,V2' if grid else 'FIELD=VALUE'}, got {item!r}")
        if name in out:
            raise UserError(f"field '{name}' is given twice in {flag}")
        if grid:
            values = [cfg.parse_value(study.config, name, v) for v in text.split(",")]
            out[name] = [cfg.check_value(study.config, name, v) for v in values]
            # 0.5 and 0.50 are one value: a trial twice would count twice in seed averages.
            for i, v in enumerate(out[name]):
                if v in out[name][:i]:
                    raise UserError(f"field '{name}' lists {text.split(',')[i]!r} twice in --grid")
        else:
            out[name] = cfg.check_value(study.config, name, cfg.parse_value(study.config, name, text))
    return out


def _sweep_fields(study, args) -> tuple[dict, dict]:
    values = _assignments(study, args.set, grid=False)
    grid = _assignments(study, args.grid, grid=True)
    for name in values.keys() & grid.keys():
        raise UserError(f"field '{name}' is given in both --set and --grid")
    return values, grid


def cmd_run(args) -> int:
    from lookinside import manifest as manifest_io
    from lookinside import planning, ray_setup, sweep
    from lookinside.lock import SweepLock
    from lookinside.results import Store

    study = studies.get(args.study)
    study.preset(args.preset)
    values, grid = _sweep_fields(study, args)
    for flag in ("cpus_per_trial", "gpus_per_trial", "checkpoint_seconds"):
        if not math.isfinite(getattr(args, flag)):
            raise UserError(f"--{flag.replace('_', '-')} must be a finite number")
    if args.cpus_per_trial <= 0 or args.cpus_per_trial > (os.cpu_count() or 1) and not args.address:
        raise UserError(f"--cpus-per-trial must lie in (0, {os.cpu_count()}] on this machine")
    if args.gpus_per_trial < 0 or args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise UserError("--gpus-per-trial must be a fraction in [0, 1] or a whole number")
    if args.gpus_per_trial > 0 and not args.address and not ray_setup.local_gpus():
        raise UserError("--gpus-per-trial needs a GPU, and this machine has none (or use --address)")
    if args.max_failures < 0:
        raise UserError("--max-failures must be >= 0")
    if args.checkpoint_seconds <= 0:
        raise UserError("--checkpoint-seconds must be > 0")
    pack = None if args.pack == "auto" else _positive_int(args.pack, "--pack")
    store = Store(args.results)
    _check_store(store, study)
    resources = planning.Resources(cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                                   max_failures=args.max_failures, checkpoint_seconds=args.checkpoint_seconds,
                                   pack=pack)
    configs = study.configs(args.preset, values, grid)
    if study.prepare:
        study.prepare(configs, store)
    ray_setup.start_ray(args.address)  # a cluster that cannot be joined fails before anything is written
    capacity = ray_setup.capacity()
    manifest = planning.plan(study, args.preset, values, grid, store, resources, capacity,
                             autoscaling=bool(args.address and args.wait_for_nodes))
    waiting = ray_setup.check_fits(manifest["bundles"], args.wait_for_nodes) if args.address else None
    manifest_io.write(store, manifest)
    print(f"sweep {manifest['sweep_id']}: {len(manifest['trials'])} trials of {study.name} "
          f"({args.preset}) in {len(manifest['packs'])} packs", file=sys.stderr)
    if waiting:
        print(waiting, file=sys.stderr)
    with SweepLock(store, study.name, manifest["sweep_id"]):
        return _finish(sweep.run(study, manifest, store, args.address, show_progress=not args.quiet))


def _check_store(store, study) -> None:
    """Everything a sweep will write can be written, and lies outside other results."""
    from lookinside.trials import all_schemas

    store.check_writable_root()
    store.check_not_nested()
    store.check_writable_folders(study.name, all_schemas(study))


def cmd_resume(args) -> int:
    from lookinside import manifest as manifest_io
    from lookinside import ray_setup, sweep
    from lookinside.lock import SweepLock
    from lookinside.results import TRIALS, Store

    path, sep, query = args.sweep.partition("?")
    root, _, sweep_id = path.rstrip("/").rpartition("/")
    root, _, study_name = root.rpartition("/")
    root += sep + query
    if not (root and study_name and sweep_id):
        raise UserError(f"expected ROOT/STUDY/SWEEP_ID, got {args.sweep!r}")
    study = studies.get(study_name)
    store = Store(root)
    manifest = manifest_io.read(store, study_name, sweep_id)
    _check_store(store, study)
    # A corrupt or stray file among the finished trials' rows: one line now, not a sweep
    # that takes every trial for missing.
    store.check_readable(study_name, TRIALS, sweep_id)
    with SweepLock(store, study_name, sweep_id):
        print(f"resuming sweep {sweep_id} of {study_name}", file=sys.stderr)
        ray_setup.start_ray(args.address)
        bundles = manifest.get("bundles") or [[{"CPU": manifest["resources"]["cpus_per_trial"]}]]
        waiting = ray_setup.check_fits(bundles, args.wait_for_nodes) if args.address else None
        if waiting:
            print(waiting, file=sys.stderr)
        return _finish(sweep.run(study, manifest, store, args.address, resume=True,
                                 show_progress=not args.quiet))


def _finish(outcome) -> int:
    from lookinside import sweep

    sweep.print_summary(outcome)
    if outcome.interrupted:
        print(f"interrupted; continue with: lookinside resume {outcome.sweep_dir}", file=sys.stderr)
        return 130
    return 0 if outcome.ok else 1


def cmd_report(args) -> int:
    from lookinside import report

    study = studies.get(args.study)
    out = args.out or os.path.join("report", study.name)
    if args.sweep and "all" in args.sweep and len(args.sweep) > 1:
        raise UserError("--sweep all stands alone")
    index, notes = report.build(study, args.results, out, args.sweep)
    for note in notes:
        print(f"lookinside: note: {note}", file=sys.stderr)
    if args.findings and study.findings is not None:
        _, tables = report.load_sweeps(study, args.results, args.sweep)
        print("\n".join(study.findings(tables)))
    print(index)
    return 0


def cmd_sweeps(args) -> int:
    """A study's sweeps, oldest first: id, preset, trials done / failed / in all, started, overrides."""
    import pyarrow.compute as pc

    from lookinside import manifest as manifest_io
    from lookinside.report import overrides
    from lookinside.results import TRIALS, ResultsError, Store

    study = studies.get(args.study)
    store = Store(args.results)
    known = store.sweeps(study.name)
    if not known:
        store.load(study.name, TRIALS)       # says why: no root, a file, no results of this study
        raise UserError(f"no sweeps of study {study.name} under {args.results}")
    trials = store.load(study.name, TRIALS, columns=["trial_id", "status"])
    print(f"{'sweep':<22} {'preset':<8} {'done':>5} {'failed':>6} {'trials':>6}  {'started (UTC)':<19}  overrides")
    for sweep_id in known:
        statuses = trials.filter(pc.equal(trials["sweep_id"], sweep_id))["status"].to_pylist()
        try:
            m = manifest_io.read(store, study.name, sweep_id)
        except ResultsError:
            m = {"trials": statuses, "preset": "?", "created_at": ""}
        started = m.get("created_at", "")[:19].replace("T", " ")
        print(f"{sweep_id:<22} {m.get('preset', '?'):<8} {statuses.count('TERMINATED'):>5} "
              f"{statuses.count('ERROR'):>6} {len(m['trials']):>6}  {started:<19}  {overrides(m) or '-'}")
    return 0


def _positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{flag} expects a positive integer or 'auto', got {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
