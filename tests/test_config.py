import json

import pytest

from vem.runtime.config import VemConfig, demo_config, get_config, paper_config


@pytest.mark.parametrize("name", ["paper", "demo"])
def test_config_round_trips_through_json(name):
    config = get_config(name)
    again = VemConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.vocoder.resblock_dilations[0], tuple)


def test_paper_config_is_audioldm2_16k():
    c = paper_config()
    assert (c.audio.sample_rate, c.audio.n_mels, c.audio.hop_length, c.audio.win_length) == (16000, 64, 160, 1024)
    assert c.vae.latent_channels == 8 and c.vae.downsample == 4
    assert c.unet.channel_mult == (1, 2, 3, 5) and c.unet.model_channels == 128
    assert c.diffusion.num_train_steps == 1000
    # HiFi-GAN must upsample a mel frame to exactly one hop of samples.
    product = 1
    for rate in c.vocoder.upsample_rates:
        product *= rate
    assert product == c.audio.hop_length


def test_demo_vocoder_matches_hop_too():
    c = demo_config()
    product = 1
    for rate in c.vocoder.upsample_rates:
        product *= rate
    assert product == c.audio.hop_length


@pytest.mark.parametrize("seconds", [0.3, 10, 23.7, 60])
def test_latent_geometry(seconds):
    c = paper_config()
    frames = c.latent_frames(seconds)
    assert frames % c.unet.time_multiple == 0
    assert frames >= seconds * c.latent_frames_per_second
    assert frames - seconds * c.latent_frames_per_second < c.unet.time_multiple
    assert c.samples(seconds) >= seconds * c.audio.sample_rate


def test_bad_config_data_is_refused():
    data = json.loads(paper_config().to_json())
    data["unet"]["heads_typo"] = 3
    with pytest.raises(ValueError, match="heads_typo"):
        VemConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown config"):
        get_config("huge")


def test_config_data_without_the_audioldm2_fields_keeps_the_earlier_layout():
    """Bundles and checkpoints written before the paper config took AudioLDM 2's layout carry no
    layout fields: they must rebuild the layout they were made with."""
    data = json.loads(paper_config().to_json())
    for section, key in (("vae", "mid_attention"), ("unet", "layout"), ("unet", "loa_dim"), ("unet", "norm_eps"),
                         ("vocoder", "upsample_padding")):
        data[section].pop(key)
    old = VemConfig.from_dict(data)
    assert (old.vae.mid_attention, old.unet.layout, old.unet.norm_eps, old.vocoder.upsample_padding) == (
        False, "vem", 1e-6, "exact")
    new = paper_config()
    assert (new.vae.mid_attention, new.unet.layout, new.unet.norm_eps, new.vocoder.upsample_padding) == (
        True, "audioldm2", 1e-5, "hifigan")
    demo = demo_config()
    assert (demo.vae.mid_attention, demo.unet.layout, demo.unet.norm_eps, demo.vocoder.upsample_padding) == (
        False, "vem", 1e-6, "exact")
