"""Put graphs of one bundle into another: one shipped bundle for GPUs and CPUs.

    python -m vem.export.combine TARGET SOURCE --pick denoiser:int8,aligner:int8,visual:fp32,...

Both bundles must be exports of the same model: their config, sampler, text encoder and tag
vocabulary must be equal (checked). The picked graphs are copied into TARGET with their manifest
entries (sha256, tensors, parity notes); SOURCE's calibration record and build facts are kept under
``built_with.added``. The runtime then runs TARGET at fp16 on a GPU and at int8 on a CPU
(`vem.runtime.pipeline.Pipeline.load` picks by backend), each precision falling back to the fp32
graph of a component that has no graph of its own at that precision.

No torch: this only copies files and JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from vem.runtime.bundle import MANIFEST_NAME, load_bundle, sha256_file
from vem.runtime.errors import VemError

SAME_MODEL_KEYS = ("config", "sampler", "text_encoder", "tags")


def combine(target: str | Path, source: str | Path, picks: list[tuple[str, str]]) -> list[str]:
    """Copy the ``(component, precision)`` graphs of ``source`` into ``target``; the files added."""
    target, source = Path(target), Path(source)
    load_bundle(target)  # both must validate and match their hashes before anything is copied
    load_bundle(source)
    target_data = json.loads((target / MANIFEST_NAME).read_text())
    source_data = json.loads((source / MANIFEST_NAME).read_text())
    for key in SAME_MODEL_KEYS:
        if target_data.get(key) != source_data.get(key):
            raise ValueError(f"{key} differs between {target} and {source}: not exports of the same model")
    checkpoints = {(data.get("built_with") or {}).get("checkpoint_sha256") for data in (target_data, source_data)}
    if len(checkpoints) > 1:
        raise ValueError(f"{target} and {source} were exported from different checkpoints")
    added = []
    for name, precision in picks:
        entry = next((e for e in source_data["components"] if e["name"] == name and e["precision"] == precision), None)
        if entry is None:
            raise ValueError(f"{source} has no {name} graph at {precision}")
        existing = [e for e in target_data["components"] if e["name"] == name and e["precision"] == precision]
        if existing and existing[0]["sha256"] == entry["sha256"]:
            continue
        if existing:
            raise ValueError(f"{target} already has a different {name} graph at {precision}")
        # a graph over 2 GB comes with its weights' file (external data): copied and checked alike
        files = [entry] + ([entry["external_data"]] if entry.get("external_data") else [])
        for item in files:
            if (target / item["file"]).exists():
                raise ValueError(f"{target / item['file']} exists: would overwrite another graph")
        for item in files:
            (target / item["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / item["file"], target / item["file"])
            if sha256_file(target / item["file"]) != item["sha256"]:
                raise ValueError(f"copy of {item['file']} does not match its sha256")
        target_data["components"].append(entry)
        added.append(entry["file"])
    built = target_data.setdefault("built_with", {})
    source_built = dict(source_data.get("built_with") or {})
    if isinstance(source_built.get("source"), str):  # a path on the build machine means nothing here
        source_built["source"] = Path(source_built["source"]).name
    built.setdefault("added", []).append({"picks": [f"{n}:{p}" for n, p in picks], "source_built_with": source_built})
    if source_data.get("calibration") is not None and any(p == "int8" for _, p in picks):
        target_data["calibration"] = source_data["calibration"]
    order = {"fp32": 0, "fp16": 1, "int8": 2}
    target_data["components"].sort(key=lambda e: (e["name"], order.get(e["precision"], 9)))
    (target / MANIFEST_NAME).write_text(json.dumps(target_data, indent=1) + "\n")
    load_bundle(target)  # the result validates
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vem.export.combine", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", help="bundle folder to add graphs to (changed in place)")
    parser.add_argument("source", help="bundle folder exported from the same checkpoint")
    parser.add_argument("--pick", required=True,
                        help="comma-separated component:precision pairs, e.g. denoiser:int8,vae_decoder:fp32")
    args = parser.parse_args(argv)
    try:
        picks = [tuple(item.split(":", 1)) for item in args.pick.split(",") if item.strip()]
        if any(len(p) != 2 for p in picks):
            raise ValueError(f"--pick {args.pick}: expected component:precision pairs")
        added = combine(args.target, args.source, picks)  # type: ignore[arg-type]
    except (ValueError, OSError, VemError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"added {', '.join(added) or 'nothing (already there)'} to {args.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
