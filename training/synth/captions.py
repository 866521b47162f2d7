"""Plain-words captions (global level) and storyboard descriptions, written from a clip's parameters."""

from __future__ import annotations

from .plan import Section, Timeline
from .style import Style
from .video import PHOTOS, Scene, TransitionPlan

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

INSTRUMENT_WORDS = {
    "pad": "warm synth pads",
    "strings": "a string section",
    "piano": "piano chords",
    "epiano": "electric piano",
    "guitar": "strummed acoustic guitar",
    "dist_guitar": "distorted electric guitar",
    "synth_lead": "a synth lead melody",
    "pluck": "a plucked melody",
    "bell": "a bell melody",
    "flute": "a flute-like melody",
    "synth_bass": "synth bass",
    "picked_bass": "bass guitar",
    "sub_bass": "deep sub bass",
}
KIT_WORDS = {
    "electronic": "four-on-the-floor electronic drums",
    "acoustic": "a pop drum kit",
    "acoustic_soft": "soft acoustic drums",
    "rock": "hard-hitting rock drums",
    "funk": "busy funk drums",
    "brushes": "brushed jazz drums",
    "lofi": "dusty lo-fi beats",
    "cinematic": "big cinematic drums and toms",
    "minimal": "a soft, minimal pulse",
}
SECTION_WORDS = {
    "intro": "the intro: sparse drums, the harmony alone",
    "verse": "a verse: the groove settles in",
    "chorus": "the chorus: full drums, the melody on top",
    "bridge": "a bridge: new chords",
    "breakdown": "a breakdown: the drums thin out",
    "outro": "the outro: the music winds down",
}


def colour_name(hue: float) -> str:
    names = [(0.04, "red"), (0.11, "orange"), (0.18, "yellow"), (0.42, "green"), (0.55, "teal"),
             (0.72, "blue"), (0.85, "purple"), (0.96, "pink"), (1.01, "red")]
    for limit, name in names:
        if hue % 1.0 < limit:
            return name
    return "red"


def _light_words(brightness: float, saturation: float) -> str:
    light = "dark" if brightness < 0.35 else ("bright" if brightness > 0.65 else "soft")
    sat = "muted" if saturation < 0.35 else ("vivid" if saturation > 0.65 else "")
    return " ".join(w for w in (light, sat) if w)


def _motion_words(speed: float) -> str:
    return "a slow drift" if speed < 0.08 else ("a steady pan" if speed < 0.2 else "fast, sweeping motion")


def scene_words(scene: Scene) -> str:
    colour = colour_name(scene.words["hue"])
    light = _light_words(scene.words["brightness"], scene.saturation)
    if scene.kind == "photo":
        what = f"a photograph of {PHOTOS[scene.photo]}"
    elif scene.kind == "texture":
        what = "a cloudy abstract texture"
    elif scene.kind == "gradient":
        what = "drifting bands of colour"
    else:
        what = "shapes bouncing across a plain background"
    return f"{what} in {light} {colour} tones".replace("  ", " ")


def global_caption(style: Style, timeline: Timeline, scenes: list[Scene], transitions: list[TransitionPlan]) -> str:
    moods = " and ".join(style.moods)
    meter = f"{timeline.beats_per_bar}/4"
    key = f"{PITCH_NAMES[style.key_pc]} {style.mode}"
    lead = "a piano melody" if style.lead == "piano" else INSTRUMENT_WORDS[style.lead]
    parts = [INSTRUMENT_WORDS[style.harmony], lead, INSTRUMENT_WORDS[style.bass]]
    music = (f"A {moods} {style.genre} track at {style.tempo_bpm:.0f} BPM in {key}, {meter} time, with "
             f"{', '.join(parts)} and {KIT_WORDS[style.kit]}.")
    n_cuts = sum(t.kind == "cut" for t in transitions)
    n_on_beat = sum(t.kind == "cut" and bool(t.on_beat) for t in transitions)
    n_gradual = len(transitions) - n_cuts
    kinds = list(dict.fromkeys(scene_words(s).split(" in ")[0] for s in scenes))
    shown = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    video = f"The video shows {shown}"
    if not transitions:
        video += " in one continuous shot"
    else:
        if n_cuts:
            on = "all on the beat" if n_on_beat == n_cuts else f"{n_on_beat} on the beat"
            video += f"; {n_cuts} cut{'s' if n_cuts != 1 else ''} ({on})"
        if n_gradual:
            video += f"{' and' if n_cuts else ';'} {n_gradual} gradual transition{'s' if n_gradual != 1 else ''}"
    return music + " " + video + "."


def storyboard_description(section: Section, scene: Scene, transitions: list[TransitionPlan]) -> str:
    inside = [t for t in transitions if section.start_s < t.time_s < section.end_s - 1e-6]
    cuts = sum(t.kind == "cut" for t in inside)
    if cuts == 0:
        pacing = "one continuous shot"
    else:
        per_s = cuts / max(section.duration_s, 1e-6)
        pacing = "quick cuts" if per_s > 0.6 else ("a cut every bar or so" if per_s > 0.25 else "a few slow cuts")
    text = f"{scene_words(scene).capitalize()}, {_motion_words(scene.speed)}, {pacing}; {SECTION_WORDS[section.kind]}."
    opening = next((t for t in transitions if abs(t.time_s - section.start_s) < 1e-6 or
                    (t.kind == "cut" and abs(t.time_s - section.start_s) < 0.06)), None)
    if opening is not None and opening.kind != "cut":
        text = ("Fading in through black: " if opening.kind == "fade" else "Dissolving in: ") + text[0].lower() + text[1:]
    return text


__all__ = ["colour_name", "global_caption", "storyboard_description"]
