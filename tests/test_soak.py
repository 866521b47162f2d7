"""Soak: many generations in one process keep memory flat; a batch of 50 with broken files in it
finishes the good ones (issue #9). Both are slow (minutes): ``pytest -m slow tests/test_soak.py``.

Also a script, for the numbers in the report::

    python tests/test_soak.py --bundle BUNDLE --calls 200 [--json soak.json]

Memory is the process's resident set (VmRSS) after each `Pipeline.generate`. The first calls grow
it (ONNX Runtime's arenas, swscale contexts, one set per input
shape), so the check is on the *last* 100 calls, by which point every shape has been seen many
times: they may add at most `MAX_GROWTH_MB`. A leak of one decoded clip per call (16 fps x 1 s
of frames at three sizes, ~0.3 MB) or of one waveform (64 kB) per call would add 30 MB and 6 MB
over 100 calls; a leak of 40 kB per call (a few small arrays) fails the test.

Measured (2026-11-25, demo bundle fp32, 2 steps, the 2-core dev machine shared with other jobs;
``python tests/test_soak.py --bundle B --calls 200``): RSS 189 MiB after loading, 559 MiB after
call 1, 737.2 MiB from call 8 on, 737.3 MiB after call 100 and 737.8 MiB after call 200: +0.48 MiB
over the last 100 calls. Median call 5.2 s (TransNetV2 most of it, under a load average of 12).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from media import write_test_video  # noqa: E402

CALLS = 200
MAX_GROWTH_MB = 4.0  # over the last 100 calls (module docstring)
STEPS = 2
# Short clips of a few lengths and sizes, used in turn: several input shapes, as in real use.
CLIP_SPECS = [
    {"seconds": 1.0, "size": (96, 64), "cut_times": [0.5]},
    {"seconds": 1.5, "size": (160, 90), "cut_times": [0.4, 1.0]},
    {"seconds": 0.6, "size": (64, 64), "cut_times": []},
    {"seconds": 2.0, "size": (128, 72), "cut_times": [1.0], "variable_frame_rate": True},
]


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_clips(folder: Path) -> list[str]:
    return [write_test_video(folder / f"clip{i}.mp4", moving_square=True, **spec).path
            for i, spec in enumerate(CLIP_SPECS)]


def soak(pipeline, clips: list[str], calls: int, steps: int = STEPS, log=None) -> dict:
    """`calls` generations over `clips` in turn; RSS and seconds after each."""
    rss, seconds = [], []
    for call in range(calls):
        started = time.perf_counter()
        result = pipeline.generate(clips[call % len(clips)], steps=steps, seed=call)
        assert result.waveform.size > 0
        del result
        seconds.append(time.perf_counter() - started)
        rss.append(rss_mb())
        if log is not None and (call + 1) % 25 == 0:
            log(f"call {call + 1:4d}: RSS {rss[-1]:7.1f} MiB, last call {seconds[-1]:.2f} s")
    half = calls // 2
    return {
        "calls": calls, "steps": steps, "clips": len(clips),
        "rss_mb": rss, "seconds": seconds,
        "rss_after_first_mb": rss[0], "rss_at_half_mb": rss[half - 1], "rss_end_mb": rss[-1],
        "growth_last_half_mb": rss[-1] - rss[half - 1],
        "max_in_last_half_mb": max(rss[half:]),
        "median_call_s": sorted(seconds)[len(seconds) // 2],
    }


@pytest.mark.slow
def test_200_generations_keep_memory_flat(demo_bundle, tmp_path):
    from vem.runtime.pipeline import Pipeline

    pipeline = Pipeline.load(demo_bundle)
    result = soak(pipeline, make_clips(tmp_path), CALLS)
    assert result["growth_last_half_mb"] < MAX_GROWTH_MB, result
    # Not just the end point: no steady climb hidden by a drop at the end.
    assert result["max_in_last_half_mb"] - result["rss_at_half_mb"] < MAX_GROWTH_MB, result


@pytest.mark.slow
def test_folder_of_50_with_broken_files(demo_bundle, tmp_path, capsys, monkeypatch):
    """vem-run over a folder of 50 files, 4 of them broken: the 46 good ones all finish, the broken
    ones are listed at the end, and the exit code says that some failed (3: unusable input)."""
    from media import write_test_audio

    from vem.runtime.run import main as vem_run

    folder = tmp_path / "videos"
    folder.mkdir()
    clips = make_clips(tmp_path)
    broken = {"07_empty.mp4", "19_text.mp4", "33_audio_only.mp4", "48_truncated.mp4"}
    for index in range(50):
        name = next((b for b in broken if b.startswith(f"{index:02d}_")), f"{index:02d}_good.mp4")
        target = folder / name
        if name == "07_empty.mp4":
            target.write_bytes(b"")
        elif name == "19_text.mp4":
            target.write_text("not a video\n" * 30)
        elif name == "33_audio_only.mp4":
            write_test_audio(target, seconds=0.5)
        elif name == "48_truncated.mp4":
            target.write_bytes(Path(clips[1]).read_bytes()[:1500])
        else:
            target.write_bytes(Path(clips[index % len(clips)]).read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(tmp_path)
    code = vem_run([str(folder), "-o", str(out), "--bundle", str(demo_bundle), "--steps", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 3
    good = sorted(p.stem for p in folder.iterdir() if p.name not in broken)
    assert len(good) == 46
    assert sorted(p.name[: -len(".vem.wav")] for p in out.glob("*.vem.wav")) == good
    assert len(list(out.glob("*.vem.mp4"))) == 46
    last = err.strip().splitlines()[-1]
    assert last.startswith("4 of 50 videos failed: ")
    assert [os.path.basename(p) for p in last.split(": ", 1)[1].split(", ")] == sorted(broken)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from vem.runtime.pipeline import Pipeline

    parser = argparse.ArgumentParser(description="Pipeline.generate soak: RSS over many calls")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--json", help="write every call's RSS and seconds here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        clips = make_clips(Path(folder))
        pipeline = Pipeline.load(args.bundle)
        print(f"after load: RSS {rss_mb():.1f} MiB", flush=True)
        result = soak(pipeline, clips, args.calls, args.steps, log=lambda text: print(text, flush=True))
    print(f"RSS after call 1 {result['rss_after_first_mb']:.1f} MiB, after call {args.calls // 2} "
          f"{result['rss_at_half_mb']:.1f} MiB, after call {args.calls} {result['rss_end_mb']:.1f} MiB; "
          f"last {args.calls - args.calls // 2} calls grew {result['growth_last_half_mb']:+.2f} MiB "
          f"(max {result['max_in_last_half_mb']:.1f}); median call {result['median_call_s']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["growth_last_half_mb"] < MAX_GROWTH_MB else 1


if __name__ == "__main__":
    sys.exit(main())
