"""A sweep's manifest, ROOT/<study>/<sweep_id>/sweep.json: every trial's config, the packs,
the resources; `resume` starts from it."""

from __future__ import annotations

from lookinside.results import Store

MANIFEST = "sweep.json"


def write(store: Store, manifest: dict) -> None:
    store.write_json(f"{store.sweep_dir(manifest['study'], manifest['sweep_id'])}/{MANIFEST}", manifest)


def read(store: Store, study: str, sweep_id: str) -> dict:
    return store.read_json(f"{store.sweep_dir(study, sweep_id)}/{MANIFEST}")
