"""vem-train: the clip cache, every phase's trainer, resume and the shipped-checkpoint path.

Data: two 3 s clips written by vem-synth's own API. The frame-level detector here is a real ONNX
graph with TransNetV2's interface (uint8 [b, 100, 27, 48, 3] -> single_frame [b, 100]) that
scores the mean absolute difference to the previous frame: a stand-in for the 30 MB TransNetV2
export (tested in test_transitions.py), so that the cache runs in seconds.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from vem.model import load_checkpoint  # noqa: E402
from vem.runtime.config import get_config  # noqa: E402
from vem.training.data import build_cache, cut_beat_target, load_cache  # noqa: E402
from vem.training.loop import LOSS_LOG, STATE_FILE, load_state, open_run, save_state, train_phase  # noqa: E402
from vem.training.phases import PHASE_ORDER, PhaseSettings, make_phase  # noqa: E402
from vem.training.synth.generate import generate_clip  # noqa: E402


class _FrameDifference(torch.nn.Module):
    def forward(self, frames):
        x = frames.float() / 255.0
        diff = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))
        diff = torch.cat([torch.zeros_like(diff[:, :1]), diff], dim=1)
        return torch.sigmoid(40.0 * (diff - 0.1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    for index in range(2):
        generate_clip(data, index, seed=7, seconds_range=(3.0, 3.0))
    onnx_path = root / "framediff.onnx"
    torch.onnx.export(_FrameDifference(), (torch.zeros(1, 100, 27, 48, 3, dtype=torch.uint8),), str(onnx_path),
                      input_names=["frames"], output_names=["single_frame"], opset_version=18,
                      dynamic_axes={"frames": {0: "windows"}}, dynamo=False)
    config = get_config("demo")
    files = build_cache(data, root / "cache", config, onnx_path, workers=1, progress=False)
    return {"root": root, "data": data, "onnx": onnx_path, "config": config, "files": files,
            "clips": load_cache(root / "cache")}


def test_cache_holds_what_the_trainers_need(tiny):
    config = tiny["config"]
    assert len(tiny["files"]) == 2 and all(f.is_file() for f in tiny["files"])
    clip = tiny["clips"][0]
    parse = json.loads((tiny["data"] / "clip_00000.json").read_text())
    frames = len(clip.trans_prob)
    assert frames == pytest.approx(3.0 * 16, abs=2)
    assert clip.visual.shape == (frames, 64, 64, 3) and clip.visual.dtype == np.uint8
    assert clip.aligner.shape == (frames, config.aligner.frame_size, config.aligner.frame_size, 3)
    assert clip.mel.shape == (64, len(clip.wave) // 160)
    assert len(clip.wave) == pytest.approx(3.0 * 16000, abs=160)
    assert clip.story_text.shape == (len(parse["storyboards"]), 128)
    assert np.allclose(clip.story_start_s, [b["start_s"] for b in parse["storyboards"]], atol=1e-5)
    assert clip.tags_hot.sum() == len(parse["global"]["tags"])
    np.testing.assert_allclose(clip.cuts_s, parse["frame"]["transitions_s"])
    # Cached clips are skipped on a second call (the cache resumes).
    stamp = tiny["files"][0].stat().st_mtime_ns
    build_cache(tiny["data"], tiny["root"] / "cache", config, tiny["onnx"], workers=1, progress=False)
    assert tiny["files"][0].stat().st_mtime_ns == stamp


def test_cut_beat_target_marks_only_cuts_on_beats():
    target = cut_beat_target(np.array([1.0, 2.03, 3.3]), np.array([0.5, 1.0, 2.0, 2.5]), 64)
    assert np.nonzero(target)[0].tolist() == [16, 32]  # 3.3 s has no beat within 1/16 s


@pytest.mark.parametrize("name", PHASE_ORDER)
def test_each_phase_overfits_a_repeated_batch(tiny, name):
    torch.manual_seed(0)
    from vem.model import VeM

    config = get_config("demo")
    model = VeM(config)
    phase = make_phase(name, tiny["clips"], model, PhaseSettings(lr=2e-3, batch=2, minutes=1.0, max_steps=10))
    # Small crops keep the test fast; the trainers' real sizes are class attributes.
    phase.crop_frames, phase.window_frames, phase.frames_per_clip = 32, 16, 2
    if name in ("diffusion", "adapter"):
        phase.crop_seconds = (0.64, 0.64)
        if name == "adapter":  # the adapter starts at zero: give the aligner features something to say
            torch.nn.init.normal_(model.aligner.head.weight)
    phase.prepare(model)
    if name == "diffusion":
        assert model.config.vae.scale_factor > 0 and model.config.vae.scale_factor != 1.0
    optimizer = torch.optim.Adam(phase.param_groups(model))
    batch = phase.sample_batch(np.random.default_rng(0))
    losses = []
    for _ in range(5):
        phase.train_mode(model)
        loss, parts = phase.loss(model, batch)
        assert torch.isfinite(loss) and all(np.isfinite(v) for v in parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses


def test_diffusion_batch_crops_storyboards_to_the_window(tiny):
    from vem.model import VeM

    model = VeM(get_config("demo"))
    phase = make_phase("diffusion", tiny["clips"], model, PhaseSettings(lr=1e-3, batch=3, minutes=1, max_steps=1))
    phase.crop_seconds = (1.28, 1.28)
    phase.prepare(model)
    batch = phase.sample_batch(np.random.default_rng(1))
    frames = batch["latent"].shape[2]
    assert frames % model.config.unet.time_multiple == 0
    window = frames / model.config.latent_frames_per_second
    ends = batch["start"] + batch["duration"]
    assert float(batch["start"].min()) >= 0 and float(ends.max()) <= window + 1e-5
    # The kept storyboards cover the whole window of every sample.
    assert torch.allclose(batch["duration"].sum(dim=1), torch.full((3,), window), atol=1e-4)


def test_resume_continues_from_the_saved_step(tiny, tmp_path):
    config = get_config("demo")
    settings = PhaseSettings(lr=1e-3, batch=2, minutes=10.0, max_steps=4)
    model, state = open_run(tmp_path, config, resume=False)
    assert train_phase(model, state, "visual", tiny["clips"], tmp_path, settings, progress=False, stop_after=2,
                       log_every=1) is None
    with pytest.raises(ValueError, match="--resume"):
        open_run(tmp_path, config, resume=False)
    model, state = open_run(tmp_path, config, resume=True)
    assert (state.phase, state.step) == ("visual", 2)
    summary = train_phase(model, state, "visual", tiny["clips"], tmp_path, settings, progress=False, log_every=1)
    assert summary["steps"] == 4
    steps = [json.loads(line)["step"] for line in (tmp_path / LOSS_LOG).read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    _, saved = load_state(tmp_path / STATE_FILE)
    assert saved.done == ["visual"] and saved.phase is None
    assert (tmp_path / "vem-visual.safetensors").is_file()


def test_cli_trains_a_phase_and_ships_fp16_weights(tiny, tmp_path):
    from vem.training.cli import train_main

    out = tmp_path / "run"
    common = ["--data", str(tiny["data"]), "--out", str(out), "--transitions-onnx", str(tiny["onnx"]), "--quiet"]
    assert train_main(["visual", *common, "--steps", "visual=2"]) == 0
    assert train_main(["visual", *common]) == 2  # an existing run needs --resume
    assert train_main(["visual", *common, "--steps", "bogus=1"]) == 2
    shipped = tmp_path / "vem-demo.safetensors"
    assert train_main(["ship", "--out", str(out), "--to", str(shipped), "--quiet"]) == 0
    model = load_checkpoint(shipped)
    _, state = load_state(out / STATE_FILE)
    reference = state.config
    assert model.config.to_dict() == reference.to_dict()
    total = sum(p.numel() for p in model.parameters())
    assert shipped.stat().st_size < total * 2 + 1_000_000  # fp16-stored
    assert next(model.parameters()).dtype == torch.float32


@pytest.mark.slow  # librosa's beat tracker JIT-compiles (numba) on first use: ~1 min on a busy 2-core CPU
def test_evaluate_scores_every_row_of_the_table(tiny, tmp_path):
    from vem.model import VeM, save_checkpoint
    from vem.training.evaluate import ALL_VARIANTS, evaluate, markdown_table

    torch.manual_seed(0)
    path = tmp_path / "untrained.safetensors"
    save_checkpoint(VeM(get_config("demo")), path)
    result = evaluate(str(path), str(tiny["root"] / "cache"), count=2, steps=2, png_dir=str(tmp_path / "png"))
    assert result["clips"] == 2 and len(result["rows"]) == 2 * len(ALL_VARIANTS)
    truth = [r for r in result["rows"] if r["variant"] == "ground_truth"]
    assert all(r["biou"] == 1.0 and r["mel_distance"] == 0.0 for r in truth)  # the music against itself
    for row in result["rows"]:
        for key in ("tbiou", "tbiou70", "biou", "mel_distance", "peak", "clipped_share", "longest_silence_s"):
            assert np.isfinite(row[key]), (row["variant"], key)
        assert row["beats_per_s"] == pytest.approx(row["beats"] / row["seconds"], rel=0.01)
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["clip_00000_full.png", "clip_00001_full.png"]
    table = markdown_table(result)
    assert table.count("\n") == 1 + len(ALL_VARIANTS) and "without SG-CAtt" in table


def test_listen_level_facts():
    from vem.training.evaluate import longest_silence_s, tempo_cv

    assert tempo_cv(np.arange(10) * 0.5) == pytest.approx(0.0, abs=1e-12)
    assert tempo_cv(np.array([0.0, 0.5, 1.5, 2.0])) > 0.3
    rate = 1000
    wave = np.ones(3 * rate, dtype=np.float32) * 0.1
    wave[1000:2200] = 0.0  # 1.2 s of silence
    assert longest_silence_s(wave, rate) == pytest.approx(1.2, abs=0.05)
    assert longest_silence_s(np.ones(rate, dtype=np.float32), rate) == 0.0


def test_runtime_text_words_conditions_as_the_runtime_does(tiny):
    """Training's second wording of the text conditions is the runtime's: caption from the
    predicted tags, one `describe_storyboard` sentence per storyboard, the runtime's encoder."""
    from vem.model import VeM
    from vem.runtime.captions import caption_from_tags
    from vem.runtime.tags import TAG_GROUPS
    from vem.runtime.text import HashedTextEncoder
    from vem.training.phases import runtime_text

    model = VeM(get_config("demo"))
    clip = tiny["clips"][0]
    words = runtime_text(model, clip, clip.story_start_s, clip.story_duration_s)
    count = len(clip.story_start_s)
    assert len(words.descriptions) == count and words.story_text.shape == (count, 128)
    assert words.descriptions[0].startswith(f"The opening shot (1 of {count})")
    assert words.caption == caption_from_tags(words.tags)
    assert len(words.tags) >= len(TAG_GROUPS)  # one per group (+ maybe a second mood)
    encoder = HashedTextEncoder(128)
    np.testing.assert_array_equal(words.caption_emb, encoder.encode(words.caption))
    np.testing.assert_array_equal(words.story_text, encoder.encode_batch(words.descriptions))


@pytest.mark.parametrize("share", [0.0, 1.0])
def test_diffusion_batches_use_the_runtime_wording_at_its_share(tiny, share):
    from vem.model import VeM

    model = VeM(get_config("demo"))
    phase = make_phase("diffusion", tiny["clips"], model, PhaseSettings(lr=1e-3, batch=4, minutes=1, max_steps=1))
    phase.crop_seconds = (1.28, 1.28)
    phase.runtime_text_share = share
    phase.prepare(model)
    batch = phase.sample_batch(np.random.default_rng(3))
    runtime = {tuple(c.runtime_caption.tolist()) for c in phase.conditions}
    synth = {tuple(c.caption.tolist()) for c in phase.conditions}
    used = {tuple(row.tolist()) for row in batch["caption"]}
    assert used <= (runtime if share == 1.0 else synth)


def test_init_starts_a_new_run_from_saved_weights(tiny, tmp_path):
    from vem.model import VeM, save_checkpoint

    torch.manual_seed(5)
    source = VeM(get_config("demo"))
    source.config.vae.scale_factor = 0.37
    save_checkpoint(source, tmp_path / "src.safetensors", dtype=torch.float16)
    model, state = open_run(tmp_path / "run", get_config("demo"), resume=False, init=tmp_path / "src.safetensors")
    assert state.done == [] and model.config.vae.scale_factor == pytest.approx(0.37)
    for (name, a), b in zip(source.state_dict().items(), model.state_dict().values()):
        if a.is_floating_point():
            assert b.dtype == torch.float32, name
            torch.testing.assert_close(b, a.half().float(), msg=name)
    assert json.loads((tmp_path / "run" / "init.json").read_text())["init"].endswith("src.safetensors")
    with pytest.raises(ValueError, match="not found"):
        open_run(tmp_path / "run2", get_config("demo"), resume=False, init=tmp_path / "missing.pt")


def test_adapter_cut_weighting_and_rhythm_dropout(tiny):
    """The adapter phase's recipe knobs: frames near a cut get ``cut_weight`` in a loss that
    stays on the MSE's scale, and ``rhythm_dropout`` turns the adapters off per sample."""
    from vem.model import VeM
    from vem.training.phases import CUT_WEIGHT_RADIUS_S

    model = VeM(tiny["config"])
    settings = PhaseSettings(lr=1e-3, batch=4, minutes=1, max_steps=1, cut_weight=5.0, rhythm_dropout=0.5)
    phase = make_phase("adapter", tiny["clips"], model, settings)
    phase.prepare(model)
    batch = phase.sample_batch(np.random.default_rng(0))
    weight, scale = batch["frame_weight"], batch["adapter_scale"]
    assert weight.shape == (4, batch["latent"].shape[2])
    assert set(np.unique(weight.numpy())) <= {1.0, 5.0}
    assert set(np.unique(scale.numpy())) <= {0.0, 1.0}
    # Weighted frames are exactly those within the radius of a cut of the sampled clip.
    fps = tiny["config"].latent_frames_per_second
    some_cut = [c for c in phase.conditions if c.cuts_s is not None and len(c.cuts_s)]
    assert some_cut, "the tiny data set needs a clip with a cut"
    cond = some_cut[0]
    w = phase._frame_weights(cond, 0, cond.latent.shape[1] // 4 * 4)
    centres = (np.arange(len(w)) + 0.5) / fps
    expected = np.min(np.abs(centres[:, None] - cond.cuts_s[None]), axis=1) <= CUT_WEIGHT_RADIUS_S
    assert np.array_equal(w == 5.0, expected) and expected.any()
    loss, parts = phase.loss(model, batch)
    assert torch.isfinite(loss) and "weighted" in parts
    # The default recipe draws neither (older runs replay their batches exactly).
    plain = make_phase("adapter", tiny["clips"], model, PhaseSettings(lr=1e-3, batch=4, minutes=1, max_steps=1))
    plain.prepare(model)
    assert "frame_weight" not in plain.sample_batch(np.random.default_rng(0))


def test_paired_differences_use_common_clips_and_skip_nan():
    from vem.training.evaluate import paired_differences

    a = [{"clip": "x", "hit70": 1.0}, {"clip": "y", "hit70": 0.5}, {"clip": "z", "hit70": float("nan")},
         {"clip": "only_a", "hit70": 0.0}]
    b = [{"clip": "x", "hit70": 0.5}, {"clip": "y", "hit70": 0.5}, {"clip": "z", "hit70": 0.2}]
    out = paired_differences(a, b, ("hit70",))["hit70"]
    assert out["mean"] == pytest.approx(0.25)  # (0.5 + 0.0) / 2: z has a NaN, only_a no partner
    assert out["ci95"] == pytest.approx(1.96 * np.std([0.5, 0.0], ddof=1) / np.sqrt(2))


def test_beat_density_is_summarised_for_old_rows_too():
    """Rows written before ``beats_per_s`` existed carry beats and seconds; the summary and the
    paired differences derive it from them."""
    from vem.training.evaluate import paired_differences, summarise

    levels = {"peak": 0.5, "longest_silence_s": 0.0}
    new = [{"clip": "a", "variant": "full", "beats": 20, "seconds": 10.0, "beats_per_s": 2.0, **levels}]
    old = [{"clip": "a", "variant": "ground_truth", "beats": 15, "seconds": 10.0, **levels}]
    summary = summarise(new + old, ("ground_truth", "full"))
    assert summary["ground_truth"]["beats_per_s"] == pytest.approx(1.5)
    assert summary["full"]["beats_per_s"] == pytest.approx(2.0)
    assert paired_differences(new, old, ("beats_per_s",))["beats_per_s"]["mean"] == pytest.approx(0.5)


def test_beat_density_agreement_counts_doubled_tempi():
    from vem.training.evaluate import beat_density_agreement

    reference = [{"clip": c, "beats": n, "seconds": 10.0} for c, n in zip("abcd", (10, 15, 20, 25))]
    follows = [{"clip": c, "beats_per_s": n / 10.0 * 1.1} for c, n in zip("abcd", (10, 15, 20, 25))]
    doubled = [{"clip": c, "beats_per_s": v} for c, v in zip("abcd", (2.0, 1.4, 2.0, 2.4))]
    agree = beat_density_agreement(follows, reference)
    assert agree["clips"] == 4 and agree["correlation"] == pytest.approx(1.0) and agree["over_1_5"] == 0
    assert agree["b_mean"] == pytest.approx(1.75)
    assert beat_density_agreement(doubled, reference)["over_1_5"] == 1  # only clip a: 2.0 > 1.5 x 1.0
    assert beat_density_agreement(doubled, reference)["correlation"] < 0.9


def test_combine_joins_rows_and_replaces_only_when_asked():
    from vem.training.evaluate import combine

    def row(clip, variant, hit):
        return {"clip": clip, "variant": variant, "hit70": hit, "tbiou": 0.1, "tbiou70": 0.1, "biou": 0.5,
                "mel_distance": 1.0, "tempo_cv": 0.1, "chance70": 0.3, "peak": 0.2, "clipped_share": 0.0,
                "longest_silence_s": 0.0}

    old = {"rows": [row("a", "ground_truth", 1.0), row("a", "full", 0.2), row("b", "full", 0.4)]}
    new = {"rows": [row("a", "full", 0.8), row("b", "full", 0.6)]}
    with pytest.raises(ValueError, match="more than one result"):
        combine([old, new])
    joined = combine([old, new], replace=True)
    full = {r["clip"]: r["hit70"] for r in joined["rows"] if r["variant"] == "full"}
    assert full == {"a": 0.8, "b": 0.6}
    assert len(joined["rows"]) == 3  # the ground-truth row kept
    assert joined["summary"]["full"]["hit70"] == pytest.approx(0.7)


def test_prepared_conditions_round_trip_and_refuse_other_weights(tiny, tmp_path):
    """`vem-train --prepared`: the adapter phase's conditions saved once are read back (no clips
    needed) to the same batches and loss within float16 storage, and refused under other weights."""
    from vem.model import VeM

    torch.manual_seed(3)
    model = VeM(tiny["config"])
    settings = PhaseSettings(lr=1e-3, batch=4, minutes=1, max_steps=1)
    path = tmp_path / "adapter-prepared.pt"
    built = make_phase("adapter", tiny["clips"], model, settings, prepared=path)
    built.prepare(model)
    assert path.is_file()
    loaded = make_phase("adapter", [], model, settings, prepared=path)  # no clips: read from the file
    loaded.prepare(model)
    assert len(loaded.conditions) == len(built.conditions) == len(tiny["clips"])
    for a, b in zip(built.conditions, loaded.conditions):
        assert b.latent.dtype == torch.float32 and b.latent.shape == a.latent.shape
        torch.testing.assert_close(b.latent, a.latent, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(b.aligner_features, a.aligner_features, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(b.cuts_s, a.cuts_s)
    batch_built = built.sample_batch(np.random.default_rng(1))
    batch_loaded = loaded.sample_batch(np.random.default_rng(1))
    torch.testing.assert_close(batch_loaded["latent"], batch_built["latent"], rtol=1e-3, atol=1e-3)
    with torch.no_grad():
        torch.testing.assert_close(loaded.loss(model, batch_loaded)[0], built.loss(model, batch_built)[0],
                                   rtol=1e-2, atol=1e-4)
    # The diffusion phase reads the adapter phase's file (without the aligner features); the
    # reverse is refused, a file lacks what the adapter phase needs.
    diffusion = make_phase("diffusion", [], model, settings, prepared=path)
    diffusion.prepare(model)
    assert len(diffusion.conditions) == len(built.conditions)
    assert all(c.aligner_features is None for c in diffusion.conditions)
    torch.testing.assert_close(diffusion.conditions[0].latent, loaded.conditions[0].latent)
    assert "features" not in diffusion.sample_batch(np.random.default_rng(1))
    diffusion_path = tmp_path / "diffusion-prepared.pt"
    own = make_phase("diffusion", tiny["clips"], model, settings, prepared=diffusion_path)
    own.prepare(model)
    own_batch, read_batch = (p.sample_batch(np.random.default_rng(2)) for p in (own, diffusion))
    assert own_batch.keys() == read_batch.keys()
    for key in own_batch:  # the same batches either way (float16 storage apart)
        torch.testing.assert_close(read_batch[key], own_batch[key], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="without the aligner features"):
        make_phase("adapter", [], model, settings, prepared=diffusion_path).prepare(model)
    # The same file under another aligner (or VAE/encoder) is refused.
    with torch.no_grad():
        next(model.aligner.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="other VAE/encoder/aligner weights"):
        make_phase("adapter", [], model, settings, prepared=path).prepare(model)
    with pytest.raises(ValueError, match="other VAE/encoder/aligner weights"):
        make_phase("diffusion", [], model, settings, prepared=path).prepare(model)
    with pytest.raises(ValueError, match="no training clips"):
        make_phase("adapter", [], model, settings, prepared=tmp_path / "missing.pt")


def test_train_cli_with_prepared_skips_the_cache(tiny, tmp_path, capsys):
    from vem.model import VeM, save_checkpoint
    from vem.training.cli import train_main

    torch.manual_seed(4)
    save_checkpoint(VeM(tiny["config"]), tmp_path / "init.safetensors")
    prepared = tmp_path / "prepared.pt"
    common = ["adapter", "--init", str(tmp_path / "init.safetensors"), "--prepared", str(prepared),
              "--steps", "adapter=2", "--batch", "2", "--quiet", "--threads", "1"]
    assert train_main([*common, "--out", str(tmp_path / "a"), "--cache", str(tiny["root"] / "cache")]) == 0
    assert prepared.is_file()
    # Second run: the cache folder does not exist, the prepared file is enough.
    assert train_main([*common, "--out", str(tmp_path / "b"), "--cache", str(tmp_path / "no-cache")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())["adapter"]
    assert summary["steps"] == 2 and summary["batch"] == 2
    assert train_main(["vae", "--out", str(tmp_path / "c"), "--prepared", str(prepared), "--quiet"]) == 2
    # A cache of other clips beside the file: refused rather than silently training on the file's.
    other = tmp_path / "other-cache"
    other.mkdir()
    first = sorted((tiny["root"] / "cache").glob("*.npz"))[0]
    (other / "clip_99999.npz").write_bytes(first.read_bytes())
    assert train_main([*common, "--out", str(tmp_path / "d"), "--cache", str(other)]) == 2
    assert "other clips" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)")
def test_adapter_phase_trains_on_cuda(tiny, tmp_path):
    """`vem-train --device cuda`: preparation on the CPU, steps on the GPU, state loads on a CPU."""
    from vem.model import VeM

    torch.manual_seed(6)
    model = VeM(tiny["config"])
    state = open_run(tmp_path / "run", tiny["config"], resume=False)[1]
    settings = PhaseSettings(lr=1e-3, batch=2, minutes=1, max_steps=3)
    summary = train_phase(model, state, "adapter", tiny["clips"], tmp_path / "run", settings, progress=False,
                          device="cuda")
    assert summary["steps"] == 3 and np.isfinite(summary["final"]["loss"])
    assert next(model.unet.parameters()).is_cuda
    reloaded, _ = load_state(tmp_path / "run" / STATE_FILE)
    assert not next(reloaded.unet.parameters()).is_cuda
    for name in ("aligner", "vae"):  # trained on the GPU: frozen parts unchanged
        for a, b in zip(getattr(model, name).state_dict().values(), getattr(reloaded, name).state_dict().values()):
            torch.testing.assert_close(a.cpu(), b)


def test_eps_mse_on_fixed_batches_pairs_checkpoints(tiny, tmp_path, capsys):
    """`evaluate --eps-mse`: the same batches for every checkpoint, so the same weights give a
    zero difference and other weights a non-zero one."""
    from vem.model import VeM, save_checkpoint
    from vem.training.evaluate import fixed_batch_eps_mse, main

    torch.manual_seed(8)
    model = VeM(tiny["config"])
    save_checkpoint(model, tmp_path / "a.safetensors")
    save_checkpoint(model, tmp_path / "a_again.safetensors")
    with torch.no_grad():  # (a fresh T-UNet's output conv is zero: move every weight)
        for parameter in model.unet.parameters():
            parameter.add_(0.05)
    save_checkpoint(model, tmp_path / "b.safetensors")
    paths = [str(tmp_path / n) for n in ("a.safetensors", "a_again.safetensors", "b.safetensors")]
    losses = fixed_batch_eps_mse(paths, cache=str(tiny["root"] / "cache"), batches=3, seed=1)
    assert all(len(v) == 3 and np.isfinite(v).all() for v in losses.values())
    np.testing.assert_allclose(losses[paths[1]], losses[paths[0]], rtol=1e-6)
    assert not np.allclose(losses[paths[2]], losses[paths[0]])
    assert main([str(tiny["root"] / "cache"), "--eps-mse", *paths[:2], "--batches", "2", "--threads", "1"]) == 0
    assert "+0.00000" in capsys.readouterr().out


def test_fresh_diffusion_keeps_phase_one_and_plain_cross_attention_is_recorded(tmp_path):
    """`--fresh-diffusion` / `--plain-cross-attention`: phases 2-3 retrained from random weights
    against the same frozen parts; the ablation's missing mask survives a ship and a reload."""
    from vem.model import VeM, load_checkpoint, save_checkpoint

    torch.manual_seed(5)
    source = VeM(get_config("demo"))
    save_checkpoint(source, tmp_path / "src.safetensors")
    init = tmp_path / "src.safetensors"
    model, state = open_run(tmp_path / "plain", get_config("demo"), resume=False, seed=1, init=init,
                            fresh_diffusion=True, plain_cross_attention=True)
    assert state.config.unet.use_storyboard_mask is False and model.unet.use_storyboard_mask is False
    for name in ("vae", "vocoder", "aligner", "visual", "style_head"):
        for (key, a), b in zip(getattr(source, name).state_dict().items(), getattr(model, name).state_dict().values()):
            torch.testing.assert_close(b, a.to(b.dtype), msg=f"{name}.{key}")
    for name in ("unet", "condition"):  # new random weights, not the source's
        a = next(p for p in getattr(source, name).parameters() if p.ndim > 1)
        b = next(p for p in getattr(model, name).parameters() if p.ndim > 1)
        assert not torch.allclose(a, b), name
    save_checkpoint(model, tmp_path / "plain.safetensors")
    assert load_checkpoint(tmp_path / "plain.safetensors").unet.use_storyboard_mask is False
    init_record = json.loads((tmp_path / "plain" / "init.json").read_text())
    assert init_record["fresh_diffusion"] and init_record["plain_cross_attention"]
    # Without --init the ablation is a fresh config; with --init it must also re-initialise.
    assert open_run(tmp_path / "scratch", get_config("demo"), resume=False,
                    plain_cross_attention=True)[0].unet.use_storyboard_mask is False
    with pytest.raises(ValueError, match="needs --fresh-diffusion"):
        open_run(tmp_path / "bad", get_config("demo"), resume=False, init=init, plain_cross_attention=True)
    with pytest.raises(ValueError, match="needs --init"):
        open_run(tmp_path / "bad2", get_config("demo"), resume=False, fresh_diffusion=True)
    save_state(tmp_path / "plain" / STATE_FILE, model, state)
    with pytest.raises(ValueError, match="start a run"):
        open_run(tmp_path / "plain", get_config("demo"), resume=True, init=init, fresh_diffusion=True)
    assert open_run(tmp_path / "plain", get_config("demo"), resume=True)[0].unet.use_storyboard_mask is False


def test_beat_grid_channel_widens_old_weights_exactly_and_trains_on_the_reference_beats(tiny, tmp_path):
    """`vem-train --beat-grid --init OLD`: the widened model computes what OLD did (the new
    channel starts at zero weight), the flag survives a ship and a reload, and the adapter
    phase's batches carry the clip's beats as one unit pulse per beat inside the crop."""
    import dataclasses

    from vem.model import VeM, load_checkpoint, save_checkpoint
    from vem.model.testing import randomize_zero_init_
    from vem.runtime.config import demo_config

    old_config = demo_config()
    old_config.unet.beat_grid = False
    torch.manual_seed(3)
    source = randomize_zero_init_(VeM(old_config), seed=3)  # adapters that do something
    save_checkpoint(source, tmp_path / "old.safetensors")
    model, state = open_run(tmp_path / "grid", demo_config(), resume=False, init=tmp_path / "old.safetensors",
                            beat_grid=True)
    assert state.config.unet.beat_grid and model.unet.rhythm_dim == old_config.aligner.feature_dim + 1
    assert json.loads((tmp_path / "grid" / "init.json").read_text())["beat_grid"] is True
    cfg = model.config
    frames, g = 16, torch.Generator().manual_seed(0)
    z = torch.randn(1, cfg.vae.latent_channels, frames, cfg.latent_mel_bins, generator=g)
    tokens = torch.randn(1, 12, cfg.unet.context_dim, generator=g)
    mask = torch.ones(1, frames, 2)
    features = torch.rand(1, frames, cfg.aligner.feature_dim, generator=g)
    grid = torch.zeros(1, frames)
    grid[0, ::4] = 1.0
    with torch.no_grad():
        before = source.eval().unet(z, torch.tensor([500]), tokens, mask, tokens[:, :2], features)
        after = model.eval().unet(z, torch.tensor([500]), tokens, mask, tokens[:, :2], features, None, grid)
    torch.testing.assert_close(after, before, rtol=0, atol=2e-3)  # fp32 source vs its fp32 reload
    save_checkpoint(model, tmp_path / "grid.safetensors")
    assert load_checkpoint(tmp_path / "grid.safetensors").config.unet.beat_grid is True

    phase = make_phase("adapter", tiny["clips"], model, PhaseSettings(lr=1e-3, batch=2, minutes=1, max_steps=1))
    phase.prepare(model)
    batch = phase.sample_batch(np.random.default_rng(0))
    assert batch["beat_grid"].shape == batch["latent"].shape[0:1] + batch["latent"].shape[2:3]
    assert torch.isfinite(phase.loss(model, batch)[0])
    cond = phase.conditions[0]
    length = cond.latent.shape[1] // 4 * 4
    fps = cfg.latent_frames_per_second
    from vem.runtime.tempo import beat_grid

    pulses = beat_grid(cond.beats_s, length, fps)
    inside = np.sum((cond.beats_s * fps - 0.5 > 0) & (cond.beats_s * fps - 0.5 < length - 1))
    assert inside > 3 and pulses.sum() == pytest.approx(inside, abs=1.0)  # the two edge beats may be cut
    # A file prepared before the beat grid (no beat times) is refused with a clear message.
    phase.conditions = [dataclasses.replace(c, beats_s=None) for c in phase.conditions]
    with pytest.raises(ValueError, match="beat times"):
        phase.sample_batch(np.random.default_rng(0))


def test_tempo_agreement_and_tempo_check(tiny, tmp_path, capsys):
    from vem.model import VeM, save_checkpoint
    from vem.training.evaluate import tempo_agreement
    from vem.training.tempo_check import main as tempo_check

    rows = [{"asked_bpm": 120.0, "reference_bpm": 121.0, "beats_per_s": 2.0, "cuts": 3},
            {"asked_bpm": 150.0, "reference_bpm": 100.0, "beats_per_s": 2.5, "cuts": 1},
            {"asked_bpm": 90.0, "reference_bpm": 90.0, "beats_per_s": 3.0, "cuts": 2},
            {"variant": "no grid", "asked_bpm": float("nan"), "beats_per_s": 2.0, "cuts": 2}]
    stats = tempo_agreement(rows)
    assert stats["clips"] == 3 and stats["asked_within_5pct"] == pytest.approx(2 / 3)
    assert stats["clips_with_2_cuts"] == 2 and stats["asked_within_5pct_2_cuts"] == 1.0
    assert stats["detected_within_10pct_of_asked"] == pytest.approx(2 / 3)  # 180 BPM detected for 90 asked
    assert tempo_agreement([{"beats_per_s": 2.0}]) == {"clips": 0}

    torch.manual_seed(0)
    save_checkpoint(VeM(tiny["config"]), tmp_path / "m.safetensors")
    assert tempo_check([str(tmp_path / "m.safetensors"), str(tiny["root"] / "cache"), "--reference-tags"]) == 0
    out = capsys.readouterr().out
    assert "soft pace prior, reference tags" in out and "of 2 clips" in out


def test_shot_match_asks_whether_each_shot_sounds_like_its_own_reference():
    from vem.training.evaluate import shot_match

    rng = np.random.default_rng(0)
    # Three shots whose reference music differs in level (2 s, 3 s, 2 s at 100 mel frames/s).
    reference = np.concatenate([np.full((64, 200), -5.0), np.full((64, 300), -3.0), np.full((64, 200), -6.0)], axis=1)
    reference += rng.normal(0, 0.1, reference.shape)
    starts, durations = [0.0, 2.0, 5.0], [2.0, 3.0, 2.0]
    # Louder overall but with the same contrasts between shots: every shot matches its own.
    assert shot_match(reference + 1.0, reference, starts, durations, 100.0) == 1.0
    # The same music played backwards: the loudest part is no longer under the middle shot.
    assert shot_match(reference[:, ::-1].copy(), reference, starts, durations, 100.0) < 0.5
    # Fewer than two shots of at least a second: nothing to compare.
    assert np.isnan(shot_match(reference, reference, [0.0, 6.5], [6.5, 0.5], 100.0))


def test_parsing_plain_drops_both_the_adapters_and_the_mask(tiny):
    """docs/paper.md Table 4's "parsing with plain cross-attention" row: the no-TB-As model with the
    storyboard mask off too, so it differs from each single ablation, and the model is left as
    found. The shipped weights: an untrained vocoder's output hardly depends on its input."""
    from vem.training.evaluate import generate_for_clip

    model = load_checkpoint(Path(__file__).resolve().parents[1] / "model" / "weights" / "vem-demo.safetensors").float().eval()
    # The mask only matters with two shots: split the 3 s clip's storyboard in two.
    clip = tiny["clips"][0]
    half = clip.duration_s / 2
    clip = dataclasses.replace(clip, story_start_s=np.array([0.0, half], np.float32),
                               story_duration_s=np.array([half, half], np.float32),
                               story_text=np.repeat(clip.story_text[:1], 2, axis=0))
    made = {variant: generate_for_clip(model, clip, variant, steps=2, guidance=3.0, seed=0)
            for variant in ("parsing_plain", "no_tb_adapter", "no_sg_catt")}
    waves = {variant: wave for variant, (wave, _) in made.items()}
    assert model.unet.use_storyboard_mask
    # Only the adapters read the beat grid, so only a variant with them is asked a tempo.
    assert np.isnan(made["parsing_plain"][1]) and np.isnan(made["no_tb_adapter"][1])
    assert 70.0 <= made["no_sg_catt"][1] <= 170.0
    scale = float(np.abs(waves["parsing_plain"]).max())
    assert np.abs(waves["parsing_plain"] - waves["no_tb_adapter"]).max() > 0.01 * scale  # the mask is off
    assert np.abs(waves["parsing_plain"] - waves["no_sg_catt"]).max() > 0.01 * scale  # the adapters are off
    again = generate_for_clip(model, clip, "parsing_plain", steps=2, guidance=3.0, seed=0)[0]
    np.testing.assert_array_equal(again, waves["parsing_plain"])


def test_reproduce_runs_the_whole_recipe_once_and_resumes(tiny, tmp_path, capsys):
    """`vem-train reproduce` at a tiny scale: every stage of the model card's chain runs in order
    (data, cache, runs 1 to 7, ship), the shipped weights carry the beat grid, a second call
    runs nothing, and a stage interrupted after its state.pt was saved continues with --resume."""
    from vem.training.cli import train_main
    from vem.training.reproduce import STATE_NAME, recipe

    work = tmp_path / "repro"
    common = ["reproduce", "--out", str(work), "--scale", "0.0001", "--clips", "2", "--seconds", "3-3",
              "--transitions-onnx", str(tiny["onnx"]), "--quiet"]
    assert train_main(common) == 0
    record = json.loads((work / STATE_NAME).read_text())
    assert record["done"] == [s.name for s in recipe()] + ["ship"]
    shipped = load_checkpoint(work / "vem-demo.safetensors")
    assert shipped.config.unet.beat_grid
    run7 = json.loads((work / "run7" / "summary.json").read_text())["adapter"]
    assert run7["steps"] == 1 and run7["batch"] == 16  # 3000 x 0.0001, at least one; the recipe's batch
    run1 = json.loads((work / "run1" / "summary.json").read_text())
    assert sorted(run1) == sorted(["vae", "vocoder", "aligner", "visual", "diffusion", "adapter"])
    assert (work / "grid-prepared.pt").is_file() and (work / "adapter-prepared.pt").is_file()

    capsys.readouterr()
    assert train_main(common) == 0  # everything done: nothing runs
    assert "[" not in capsys.readouterr().out

    # Interrupted inside run 7 after its state.pt: the same command continues that run.
    record["done"] = record["done"][:-2]
    (work / STATE_NAME).write_text(json.dumps(record))
    assert train_main(common + ["--print"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[-2].startswith("todo") and "--resume" in listing[-2] and "--init" not in listing[-2]
    assert train_main(common) == 0
    assert json.loads((work / STATE_NAME).read_text())["done"] == record["done"] + ["run7", "ship"]
    assert train_main(["reproduce", "--out", str(work), "--scale", "0"]) == 2
    # A stage that continues a run never starts it from random weights when the run is gone.
    record = json.loads((work / STATE_NAME).read_text())
    record["done"] = record["done"][:record["done"].index("run2-adapter")]
    (work / STATE_NAME).write_text(json.dumps(record))
    (work / "run2" / "state.pt").unlink()
    assert train_main(common) == 2
