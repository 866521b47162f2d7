"""Sample a clip's style: global tags and the musical / visual parameters they imply.

Every tag drawn here is in `vem.runtime.tags.TAG_VOCABULARY`. The parameters (tempo, mode,
instruments, energy, brightness, colour, motion speed) are functions of the tags plus a little
randomness, so that both the music and the pictures carry the style the tags name -- the signal
the semantic path of the model is meant to learn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vem.runtime.tags import TAG_VOCABULARY

# Per genre: tempo range (BPM), drum kit, harmony / lead / bass instruments, instrument tags,
# base energy and a hue (0..1 on the colour wheel) the pictures lean towards.
GENRES: dict[str, dict] = {
    "electronic": dict(tempo=(112, 170), kit="electronic", harmony=["pad", "epiano"], lead=["synth_lead", "pluck"],
                       bass="synth_bass", instruments=["synth", "pads", "bass"], energy=0.7, hue=0.62),
    "acoustic": dict(tempo=(76, 124), kit="acoustic_soft", harmony=["guitar"], lead=["pluck", "flute"],
                     bass="picked_bass", instruments=["guitar"], energy=0.4, hue=0.1),
    "cinematic": dict(tempo=(70, 112), kit="cinematic", harmony=["strings"], lead=["bell", "piano"],
                      bass="sub_bass", instruments=["strings", "drums"], energy=0.55, hue=0.58),
    "pop": dict(tempo=(92, 132), kit="acoustic", harmony=["piano", "epiano"], lead=["synth_lead", "bell"],
                bass="synth_bass", instruments=["piano", "drums"], energy=0.6, hue=0.9),
    "rock": dict(tempo=(104, 170), kit="rock", harmony=["dist_guitar"], lead=["synth_lead"],
                 bass="picked_bass", instruments=["guitar", "drums", "bass"], energy=0.8, hue=0.02),
    "ambient": dict(tempo=(70, 96), kit="minimal", harmony=["pad"], lead=["bell", "flute"],
                    bass="sub_bass", instruments=["pads", "bells"], energy=0.2, hue=0.5),
    "jazz": dict(tempo=(84, 150), kit="brushes", harmony=["epiano", "piano"], lead=["flute", "piano"],
                 bass="picked_bass", instruments=["piano", "bass"], energy=0.45, hue=0.08),
    "lofi": dict(tempo=(70, 92), kit="lofi", harmony=["epiano"], lead=["pluck", "bell"],
                 bass="sub_bass", instruments=["piano", "drums"], energy=0.3, hue=0.75),
    "funk": dict(tempo=(92, 120), kit="funk", harmony=["guitar", "epiano"], lead=["synth_lead"],
                 bass="picked_bass", instruments=["bass", "guitar"], energy=0.7, hue=0.13),
    "orchestral": dict(tempo=(70, 128), kit="cinematic", harmony=["strings"], lead=["flute", "bell"],
                       bass="sub_bass", instruments=["strings", "bells"], energy=0.5, hue=0.55),
}

# Per mood: energy shift, brightness shift, preferred mode (None: either), hue pull, saturation.
MOODS: dict[str, dict] = {
    "calm": dict(energy=-0.3, bright=0.0, mode=None, hue=0.5, sat=-0.2),
    "energetic": dict(energy=0.35, bright=0.1, mode=None, hue=0.02, sat=0.3),
    "happy": dict(energy=0.1, bright=0.25, mode="major", hue=0.14, sat=0.25),
    "sad": dict(energy=-0.25, bright=-0.2, mode="minor", hue=0.62, sat=-0.3),
    "dark": dict(energy=0.0, bright=-0.4, mode="minor", hue=0.7, sat=-0.1),
    "bright": dict(energy=0.05, bright=0.4, mode="major", hue=0.15, sat=0.2),
    "tense": dict(energy=0.2, bright=-0.2, mode="minor", hue=0.0, sat=0.1),
    "romantic": dict(energy=-0.15, bright=0.1, mode="major", hue=0.95, sat=0.1),
    "epic": dict(energy=0.3, bright=0.0, mode="minor", hue=0.08, sat=0.15),
    "playful": dict(energy=0.15, bright=0.25, mode="major", hue=0.3, sat=0.35),
    "mysterious": dict(energy=-0.1, bright=-0.3, mode="minor", hue=0.75, sat=0.0),
    "dreamy": dict(energy=-0.25, bright=0.1, mode=None, hue=0.8, sat=-0.1),
    "uplifting": dict(energy=0.2, bright=0.3, mode="major", hue=0.12, sat=0.2),
    "aggressive": dict(energy=0.4, bright=-0.1, mode="minor", hue=0.0, sat=0.3),
}

# Moods that fit a genre (others are allowed but rarer), so tags co-occur plausibly.
GENRE_MOODS: dict[str, list[str]] = {
    "electronic": ["energetic", "dark", "bright", "tense", "uplifting", "dreamy", "aggressive"],
    "acoustic": ["calm", "happy", "sad", "romantic", "bright", "dreamy"],
    "cinematic": ["epic", "tense", "mysterious", "dark", "sad", "uplifting"],
    "pop": ["happy", "energetic", "bright", "romantic", "playful", "uplifting"],
    "rock": ["energetic", "aggressive", "dark", "epic", "tense"],
    "ambient": ["calm", "dreamy", "mysterious", "dark", "sad"],
    "jazz": ["calm", "romantic", "playful", "mysterious", "happy"],
    "lofi": ["calm", "sad", "dreamy", "romantic"],
    "funk": ["playful", "energetic", "happy", "bright"],
    "orchestral": ["epic", "sad", "romantic", "mysterious", "uplifting", "calm"],
}


@dataclass
class Style:
    """One clip's style: its tags and every parameter derived from them."""

    genre: str
    moods: list[str]
    tags: list[str]
    tempo_bpm: float
    beats_per_bar: int
    key_pc: int  # pitch class of the tonic, 0 = C
    mode: str  # "major" | "minor"
    energy: float  # 0..1: drum density, loudness, motion speed, cut rate
    brightness: float  # 0..1: filter cut-offs, picture brightness
    hue: float  # 0..1 colour-wheel angle the pictures lean to
    saturation: float  # 0..1 picture saturation
    kit: str
    harmony: str
    lead: str
    bass: str
    reverb_s: float
    texture: str  # "smooth" | "grainy" | "sharp": picture texture
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def pace_tag(tempo_bpm: float) -> str:
    return "slow" if tempo_bpm < 95 else ("moderate" if tempo_bpm < 128 else "fast")


def sample_style(rng: np.random.Generator) -> Style:
    genre = str(rng.choice(list(GENRES)))
    profile = GENRES[genre]
    fitting = GENRE_MOODS[genre]
    n_moods = 1 if rng.random() < 0.45 else 2
    moods: list[str] = []
    while len(moods) < n_moods:
        pool = fitting if rng.random() < 0.85 else list(MOODS)
        mood = str(rng.choice(pool))
        # calm+energetic or bright+dark contradict; keep the first.
        clash = {("calm", "energetic"), ("energetic", "calm"), ("bright", "dark"), ("dark", "bright"),
                 ("happy", "sad"), ("sad", "happy"), ("calm", "aggressive"), ("aggressive", "calm")}
        if mood not in moods and not any((m, mood) in clash for m in moods):
            moods.append(mood)

    energy = profile["energy"] + sum(MOODS[m]["energy"] for m in moods) + rng.normal(0, 0.07)
    energy = _clip01(energy)
    brightness = _clip01(0.5 + sum(MOODS[m]["bright"] for m in moods) + rng.normal(0, 0.07))
    lo, hi = profile["tempo"]
    # Energy leans the tempo towards the fast end of the genre's range; half of it is chance, so
    # that energetic genres do not pile up at their upper limit.
    tempo = lo + (hi - lo) * (0.5 * energy + 0.5 * rng.random())
    tempo = float(np.clip(round(tempo), 70, 170))

    modes = [MOODS[m]["mode"] for m in moods if MOODS[m]["mode"]]
    mode = modes[0] if modes else ("major" if rng.random() < 0.5 else "minor")
    beats_per_bar = 3 if (rng.random() < 0.15 and genre in ("acoustic", "jazz", "orchestral", "ambient", "pop")) else 4

    # Hue: the genre's, pulled towards the moods' (circular mean of unit vectors).
    angles = [profile["hue"]] + [MOODS[m]["hue"] for m in moods]
    vec = np.mean([np.exp(2j * np.pi * a) for a in angles])
    hue = float((np.angle(vec) / (2 * np.pi) + rng.normal(0, 0.03)) % 1.0)
    saturation = _clip01(0.45 + sum(MOODS[m]["sat"] for m in moods) + 0.2 * (energy - 0.5) + rng.normal(0, 0.05))
    texture = "grainy" if genre in ("rock", "lofi") or "aggressive" in moods else (
        "smooth" if genre in ("ambient",) or "dreamy" in moods or "calm" in moods else "sharp")

    harmony = str(rng.choice(profile["harmony"]))
    lead = str(rng.choice(profile["lead"]))
    instrument_tags = {
        "pad": "pads", "epiano": "piano", "piano": "piano", "guitar": "guitar", "dist_guitar": "guitar",
        "strings": "strings", "bell": "bells", "synth_lead": "synth", "pluck": "synth", "flute": None,
    }
    instruments = [t for t in (instrument_tags.get(harmony), instrument_tags.get(lead)) if t]
    instruments += [t for t in profile["instruments"] if t not in instruments]
    n_inst = int(rng.integers(1, 3))
    tags = [genre] + moods + instruments[:n_inst] + [pace_tag(tempo)]
    tags = list(dict.fromkeys(tags))
    assert all(t in TAG_VOCABULARY for t in tags), tags

    reverb_s = float(np.clip(0.6 + 1.6 * (1 - energy) + (0.6 if genre in ("cinematic", "ambient", "orchestral") else 0)
                             + rng.normal(0, 0.1), 0.4, 3.0))
    return Style(
        genre=genre,
        moods=moods,
        tags=tags,
        tempo_bpm=tempo,
        beats_per_bar=beats_per_bar,
        key_pc=int(rng.integers(0, 12)),
        mode=mode,
        energy=energy,
        brightness=brightness,
        hue=hue,
        saturation=saturation,
        kit=profile["kit"],
        harmony=harmony,
        lead=lead,
        bass=profile["bass"],
        reverb_s=reverb_s,
        texture=texture,
    )
