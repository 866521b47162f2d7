"""Numpy music synthesis at 16 kHz: drums, bass, harmony and lead on an exact beat grid.

Everything is synthesised here, no samples: drums from pitch-swept sines and filtered noise bursts
with exponential envelopes; tonal instruments additively (piano partials with inharmonicity and
per-partial decay, plucked strings as modal partials whose damping grows with frequency -- the
spectrum a Karplus-Strong loop produces, but exactly in tune), FM electric piano and bells,
band-limited saw pads and strings with detune and vibrato, ADSR envelopes everywhere, then a
convolution reverb (decaying filtered noise) and a soft limiter. Notes are rendered once per
(instrument, pitch, length) and reused, which keeps a 40 s track well under a second of CPU.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .plan import Timeline
from .style import Style

SAMPLE_RATE = 16000
NYQUIST = SAMPLE_RATE / 2
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)
TARGET_RMS_DBFS = -18.0
PEAK_LIMIT = 0.95


def midi_to_hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def _t(seconds: float) -> np.ndarray:
    return np.arange(int(round(seconds * SAMPLE_RATE)), dtype=np.float64) / SAMPLE_RATE


def adsr(n: int, attack: float, decay: float, sustain: float, release: float, note_len: float) -> np.ndarray:
    """Linear attack, exponential decay to ``sustain``, exponential release after ``note_len`` s."""
    t = np.arange(n) / SAMPLE_RATE
    env = np.where(t < attack, t / max(attack, 1e-4), sustain + (1 - sustain) * np.exp(-(t - attack) / max(decay, 1e-4)))
    held = np.minimum(t, note_len)
    level_at_release = np.where(held < attack, held / max(attack, 1e-4),
                                sustain + (1 - sustain) * np.exp(-(held - attack) / max(decay, 1e-4)))
    after = t > note_len
    env = np.where(after, level_at_release * np.exp(-(t - note_len) / max(release, 1e-4)), env)
    return env


def _lowpass(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, NYQUIST * 0.95) / NYQUIST, btype="low", output="sos")
    return signal.sosfilt(sos, x)


def _highpass(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, NYQUIST * 0.95) / NYQUIST, btype="high", output="sos")
    return signal.sosfilt(sos, x)


def _bandpass(x: np.ndarray, low: float, high: float, order: int = 2) -> np.ndarray:
    sos = signal.butter(order, [low / NYQUIST, min(high, NYQUIST * 0.95) / NYQUIST], btype="band", output="sos")
    return signal.sosfilt(sos, x)


def _additive(freqs: np.ndarray, amps: np.ndarray, decays: np.ndarray, t: np.ndarray, phases=None) -> np.ndarray:
    """Sum of exponentially decaying partials; partials above Nyquist are dropped (no aliasing)."""
    keep = freqs < NYQUIST * 0.98
    freqs, amps, decays = freqs[keep], amps[keep], decays[keep]
    if phases is None:
        phases = np.zeros(freqs.size)
    else:
        phases = phases[keep]
    out = np.zeros_like(t)
    for f, a, d, p in zip(freqs, amps, decays, phases):
        out += a * np.exp(-t * d) * np.sin(2 * np.pi * f * t + p)
    return out


def _saw(freq: float, t: np.ndarray, brightness: float, vibrato: float = 0.0, vib_rate: float = 5.5) -> np.ndarray:
    """Band-limited sawtooth (additive) with a lowpass-like roll-off set by ``brightness``."""
    cutoff = 600 + 4400 * brightness
    phase = 2 * np.pi * freq * t
    if vibrato:
        # vibrato fades in, like a player's
        depth = vibrato * np.minimum(t / 0.4, 1.0)
        phase = phase + depth * freq / vib_rate * np.sin(2 * np.pi * vib_rate * t)
    out = np.zeros_like(t)
    k = 1
    while k * freq < NYQUIST * 0.95 and k <= 40:
        rolloff = 1.0 / (1.0 + (k * freq / cutoff) ** 2)
        out += np.sin(k * phase) * rolloff / k
        k += 1
    return out


class Instruments:
    """Note renderers for one clip's style, with a cache keyed on (name, pitch, length)."""

    def __init__(self, style: Style, rng: np.random.Generator):
        self.style = style
        self.rng = rng
        self.cache: dict[tuple, np.ndarray] = {}
        # 12 s of noise: longer than any note plus its tail (the longest, a 4-beat pad at 70 BPM, ~4.3 s)
        self.noise = rng.standard_normal(SAMPLE_RATE * 12)

    def note(self, name: str, midi: int, length_s: float) -> np.ndarray:
        key = (name, int(midi), round(length_s, 2))
        if key not in self.cache:
            self.cache[key] = getattr(self, "_" + name)(int(midi), round(length_s, 2)).astype(np.float32)
        return self.cache[key]

    def hit(self, name: str) -> np.ndarray:
        return self.note(name, 0, 0.0)

    # ---- drums ------------------------------------------------------------------------------
    def _kick(self, _m: int, _l: float) -> np.ndarray:
        kit = self.style.kit
        long = kit in ("electronic", "lofi")
        t = _t(0.6 if long else 0.35)
        f_end = 46.0 if long else 55.0
        sweep = f_end + (170.0 - f_end) * np.exp(-t / 0.03)
        phase = 2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE
        body = np.sin(phase) * np.exp(-t / (0.28 if long else 0.12))
        click = _highpass(self.noise[: t.size], 1500) * np.exp(-t / 0.004) * 0.4
        return np.tanh(1.4 * (body + click)) / np.tanh(1.4)

    def _snare(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.3)
        tone = (np.sin(2 * np.pi * 185 * t) + 0.5 * np.sin(2 * np.pi * 330 * t)) * np.exp(-t / 0.05)
        decay = 0.12 if self.style.kit != "brushes" else 0.18
        noise = _bandpass(self.noise[: t.size], 1200, 7000) * np.exp(-t / decay)
        if self.style.kit == "brushes":
            return 0.25 * tone + 0.9 * noise * np.minimum(t / 0.01, 1)
        return 0.55 * tone + 1.0 * noise

    def _clap(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.35)
        env = np.zeros_like(t)
        for start in (0.0, 0.011, 0.023):  # three hands slightly apart
            env += np.where(t >= start, np.exp(-(t - start) / 0.008), 0)
        env += np.where(t >= 0.03, 0.5 * np.exp(-(t - 0.03) / 0.1), 0)
        return _bandpass(self.noise[: t.size], 900, 3500) * env * 1.8

    def _hat(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.08)
        return _highpass(self.noise[1000 : 1000 + t.size], 6000, order=4) * np.exp(-t / 0.018) * 1.6

    def _open_hat(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.4)
        return _highpass(self.noise[3000 : 3000 + t.size], 5500, order=4) * np.exp(-t / 0.12) * 1.2

    def _ride(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.8)
        ping = _additive(np.array([520.0, 1367.0, 2693.0, 4411.0]), np.array([0.3, 0.25, 0.2, 0.15]),
                         np.array([3.0, 4.0, 5.0, 7.0]), t)
        wash = _highpass(self.noise[: t.size], 4000) * np.exp(-t / 0.3) * 0.5
        return (ping + wash) * 0.8

    def _crash(self, _m: int, _l: float) -> np.ndarray:
        t = _t(1.6)
        return _highpass(self.noise[: t.size] * 0.7 + self.noise[::-1][: t.size] * 0.7, 3000) * np.exp(-t / 0.5)

    def _tom(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.7)
        sweep = 70 + 60 * np.exp(-t / 0.05)
        body = np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.exp(-t / 0.3)
        skin = _lowpass(self.noise[: t.size], 900) * np.exp(-t / 0.05) * 0.6
        return body + skin

    def _shaker(self, _m: int, _l: float) -> np.ndarray:
        t = _t(0.1)
        return _bandpass(self.noise[500 : 500 + t.size], 3000, 7500) * np.sin(np.pi * np.minimum(t / 0.06, 1)) * 0.9

    # ---- tonal ------------------------------------------------------------------------------
    def _piano(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.6)
        k = np.arange(1, 16)
        inharm = 0.0004
        freqs = k * f0 * np.sqrt(1 + inharm * k**2)
        amps = (1.0 / k**1.1) * (0.5 + 0.5 * np.abs(np.sin(np.pi * k * 0.12)))  # hammer position comb
        base_decay = 0.6 + f0 / 400
        decays = base_decay * (1 + 0.35 * (k - 1))
        tone = _additive(freqs, amps, decays, t)
        hammer = _lowpass(self.noise[: t.size], 3000) * np.exp(-t / 0.006) * 0.08
        damper = np.where(t > length, np.exp(-(t - length) / 0.12), 1.0)
        return (tone + hammer) * damper

    def _epiano(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.5)
        index = 0.3 + 1.8 * np.exp(-t / 0.25) * (0.5 + self.style.brightness)
        tone = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * f0 * t))
        tine = 0.15 * np.sin(2 * np.pi * 14 * f0 * t) * np.exp(-t / 0.03) if 14 * f0 < NYQUIST else 0
        tremolo = 1 + 0.1 * np.sin(2 * np.pi * 4.5 * t)
        return (tone + tine) * adsr(t.size, 0.003, 1.2, 0.3, 0.2, length) * tremolo

    def _bell(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(max(length, 0.8) + 0.8)
        index = 2.5 * np.exp(-t / 0.6)
        tone = np.sin(2 * np.pi * f0 * t + index * np.sin(2 * np.pi * 3.5 * f0 * t))
        return tone * np.exp(-t / 0.9) * np.minimum(t / 0.002, 1)

    def _pluck(self, midi: int, length: float) -> np.ndarray:
        """Plucked string: modal partials, damping growing with frequency (a Karplus-Strong spectrum)."""
        f0 = midi_to_hz(midi)
        t = _t(length + 0.4)
        k = np.arange(1, 24)
        position = 0.18  # pluck point along the string shapes the initial spectrum
        amps = np.abs(np.sin(np.pi * k * position)) / k
        decays = 1.5 + 0.02 * (k * f0 / 100.0) ** 2 * (1.3 - self.style.brightness)
        tone = _additive(k * f0, amps, decays, t, phases=self.rng.uniform(0, 2 * np.pi, k.size))
        damp = np.where(t > length, np.exp(-(t - length) / 0.08), 1.0)
        return tone * damp * np.minimum(t / 0.002, 1)

    def _guitar(self, midi: int, length: float) -> np.ndarray:
        return self._pluck(midi, length) * 1.1

    def _dist_guitar(self, midi: int, length: float) -> np.ndarray:
        clean = self._pluck(midi, length) + self._pluck(midi + 7, length) * 0.8  # power chord
        driven = np.tanh(6 * clean)
        return _lowpass(driven, 2500 + 2000 * self.style.brightness) * 0.35

    def _picked_bass(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.15)
        k = np.arange(1, 12)
        amps = np.abs(np.sin(np.pi * k * 0.25)) / k
        decays = 1.0 + 0.05 * (k * f0 / 60.0) ** 2
        tone = _additive(k * f0, amps, decays, t)
        return tone * np.where(t > length, np.exp(-(t - length) / 0.04), 1.0) * np.minimum(t / 0.003, 1)

    def _synth_bass(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.1)
        # filter envelope: bright attack closing down (additive roll-off moves with time)
        out = np.zeros_like(t)
        cutoff = 200 + (300 + 1500 * self.style.brightness) * np.exp(-t / 0.12)
        k = 1
        while k * f0 < NYQUIST * 0.9 and k <= 30:
            out += np.sin(2 * np.pi * k * f0 * t) / k / (1 + (k * f0 / cutoff) ** 2)
            k += 1
        out += 0.5 * np.sin(2 * np.pi * f0 * t)
        return out * adsr(t.size, 0.004, 0.3, 0.7, 0.04, length)

    def _sub_bass(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.2)
        tone = np.sin(2 * np.pi * f0 * t) + 0.25 * np.sin(4 * np.pi * f0 * t)
        return tone * adsr(t.size, 0.01, 0.5, 0.8, 0.12, length)

    def _pad(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.8)
        voices = sum(_saw(f0 * d, t, 0.25 + 0.4 * self.style.brightness) for d in (0.995, 1.0, 1.006))
        return voices / 3 * adsr(t.size, 0.35, 0.8, 0.8, 0.6, length)

    def _strings(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.5)
        voices = _saw(f0, t, 0.3 + 0.4 * self.style.brightness, vibrato=0.006) + _saw(
            f0 * 1.004, t, 0.3 + 0.4 * self.style.brightness, vibrato=0.005, vib_rate=5.1
        )
        return voices / 2 * adsr(t.size, 0.18, 0.6, 0.85, 0.35, length)

    def _synth_lead(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.2)
        tone = _saw(f0, t, 0.3 + 0.5 * self.style.brightness, vibrato=0.004) * 0.8
        return tone * adsr(t.size, 0.01, 0.2, 0.75, 0.1, length)

    def _flute(self, midi: int, length: float) -> np.ndarray:
        f0 = midi_to_hz(midi)
        t = _t(length + 0.2)
        vib = 0.004 * np.minimum(t / 0.3, 1) * np.sin(2 * np.pi * 5 * t)
        phase = 2 * np.pi * f0 * np.cumsum(1 + vib) / SAMPLE_RATE
        tone = np.sin(phase) + 0.2 * np.sin(2 * phase) + 0.08 * np.sin(3 * phase)
        breath = _bandpass(self.noise[: t.size], min(f0 * 1.5, 6000), min(f0 * 4, 7500)) * 0.08
        return (tone + breath) * adsr(t.size, 0.06, 0.3, 0.8, 0.12, length)


def _scale(style: Style) -> tuple[int, ...]:
    return MAJOR_SCALE if style.mode == "major" else MINOR_SCALE


def _degree_to_midi(style: Style, degree: int, octave_base: int) -> int:
    scale = _scale(style)
    octave, step = divmod(degree, 7)
    return octave_base + style.key_pc + 12 * octave + scale[step]


def chord_notes(style: Style, root_degree: int, octave_base: int, seventh: bool = False) -> list[int]:
    degrees = [root_degree, root_degree + 2, root_degree + 4] + ([root_degree + 6] if seventh else [])
    return [_degree_to_midi(style, d, octave_base) for d in degrees]


def _drum_pattern(style: Style, level: int, steps_per_bar: int, beats_per_bar: int) -> dict[str, list[tuple[int, float]]]:
    """Hits per 16th step of one bar: {drum: [(step, velocity), ...]}. Every beat gets a hit."""
    beat_steps = [4 * b for b in range(beats_per_bar)]
    eighths = list(range(0, steps_per_bar, 2))
    sixteenths = list(range(steps_per_bar))
    kit = style.kit
    p: dict[str, list[tuple[int, float]]] = {}
    backbeat = [4 * b for b in range(1, beats_per_bar, 2)] if beats_per_bar == 4 else [4, 8]
    if kit == "electronic":
        p["kick"] = [(s, 1.0) for s in beat_steps]
        if level >= 1:
            p["clap"] = [(s, 0.8) for s in backbeat]
            p["open_hat"] = [(s + 2, 0.35) for s in beat_steps]
        p["hat"] = [(s, 0.35 if s % 4 else 0.5) for s in (sixteenths if level == 2 else eighths)]
    elif kit in ("acoustic", "rock", "acoustic_soft", "funk"):
        kicks = [0, 8] if beats_per_bar == 4 else [0]
        if level >= 1 and kit in ("rock", "funk"):
            kicks += [6, 10] if kit == "rock" else [3, 10]
        if level == 0:
            kicks = beat_steps
        p["kick"] = [(s, 1.0 if s in beat_steps else 0.7) for s in kicks]
        if level >= 1:
            p["snare"] = [(s, 0.85) for s in backbeat]
        else:
            p["snare"] = [(s, 0.35) for s in backbeat]
        hats = sixteenths if (level == 2 and kit == "funk") else eighths
        p["hat"] = [(s, 0.55 if s % 4 == 0 else 0.25) for s in hats]
        if level == 2 and kit == "rock":
            p["crash_on_one"] = [(0, 0.5)]
    elif kit == "brushes":
        p["kick"] = [(s, 0.6) for s in beat_steps[::2]]
        p["snare"] = [(s, 0.5) for s in backbeat]
        p["ride"] = [(s, 0.45) for s in beat_steps] + ([(s + 3, 0.25) for s in beat_steps] if level >= 1 else [])
    elif kit == "lofi":
        p["kick"] = [(0, 1.0), (7, 0.6), (8, 0.9)] if beats_per_bar == 4 else [(0, 1.0)]
        if level == 0:
            p["kick"] = [(s, 0.8) for s in beat_steps]
        p["snare"] = [(s, 0.7) for s in backbeat]
        p["hat"] = [(s, 0.4 if s % 4 == 0 else 0.18) for s in eighths]
    elif kit == "cinematic":
        p["kick"] = [(s, 1.0) for s in beat_steps[::2]]
        p["tom"] = [(s, 0.7) for s in beat_steps[1::2]] + ([(s + 2, 0.4) for s in beat_steps] if level == 2 else [])
        p["shaker"] = [(s, 0.45 if s % 4 == 0 else 0.18) for s in (eighths if level >= 1 else beat_steps)]
        if level >= 1:
            p["snare"] = [(s, 0.6) for s in backbeat[-1:]]
    else:  # minimal (ambient): soft kick on every beat, shaker eighths, rim on the backbeat
        p["kick"] = [(s, 0.75) for s in beat_steps]
        p["shaker"] = [(s, 0.35 if s % 4 == 0 else 0.2) for s in eighths]
        if level >= 1:
            p["snare"] = [(s, 0.3) for s in backbeat]
    return p


DRUM_GAINS = {"kick": 0.9, "snare": 0.5, "clap": 0.45, "hat": 0.22, "open_hat": 0.16, "ride": 0.2,
              "crash": 0.22, "tom": 0.55, "shaker": 0.25}

# Per harmony instrument: (octave base MIDI, gain); per lead: same.
HARMONY_SETUP = {"pad": (48, 0.16), "strings": (48, 0.16), "piano": (48, 0.22), "epiano": (48, 0.22),
                 "guitar": (48, 0.22), "dist_guitar": (40, 0.32)}
LEAD_SETUP = {"synth_lead": (72, 0.12), "pluck": (72, 0.22), "bell": (72, 0.12), "piano": (72, 0.2),
              "flute": (72, 0.2)}
BASS_SETUP = {"synth_bass": (36, 0.35), "picked_bass": (36, 0.45), "sub_bass": (36, 0.5)}

LEAD_RHYTHMS = [  # (onset in eighths, length in eighths) per bar of 8 eighths (4/4)
    [(0, 2), (2, 2), (4, 3)],
    [(0, 1), (1, 1), (2, 2), (4, 2), (6, 2)],
    [(0, 3), (3, 1), (4, 4)],
    [(1, 1), (2, 2), (5, 1), (6, 2)],
    [(0, 2), (3, 2), (6, 2)],
    [(0, 4), (4, 4)],
]


class _Mixer:
    def __init__(self, n: int, warp=None):
        self.dry = np.zeros(n, dtype=np.float32)
        self.wet_send = np.zeros(n, dtype=np.float32)
        self.warp = warp  # steady time -> clip time (a tempo map), or None

    def add(self, sound: np.ndarray, start_s: float, gain: float, send: float = 0.0) -> None:
        if self.warp is not None:
            start_s = float(self.warp(start_s))
        start = int(round(start_s * SAMPLE_RATE))
        if start >= self.dry.size or start + sound.size <= 0:
            return
        begin = max(0, -start)
        end = min(sound.size, self.dry.size - start)
        seg = sound[begin:end]
        self.dry[start + begin : start + end] += gain * seg
        if send:
            self.wet_send[start + begin : start + end] += gain * send * seg


def _reverb_ir(style: Style, rng: np.random.Generator) -> np.ndarray:
    t = _t(style.reverb_s)
    noise = rng.standard_normal(t.size)
    decay = np.exp(-6.9 * t / style.reverb_s)  # -60 dB at reverb_s
    ir = _lowpass(noise, 2500 + 3000 * style.brightness) * decay
    ir[: int(0.012 * SAMPLE_RATE)] = 0  # pre-delay
    return ir / np.sqrt(np.sum(ir**2))


def render_music(style: Style, timeline: Timeline, rng: np.random.Generator) -> np.ndarray:
    """The full mix (mono float32 in [-1, 1]) for ``timeline``, ``timeline.duration_s`` long."""
    n = int(round(timeline.duration_s * SAMPLE_RATE))
    mix = _Mixer(n, timeline.warp)  # events are placed in steady time, the mixer moves them onto the map
    inst = Instruments(style, rng)
    beat = timeline.beat_period_s
    bpb = timeline.beats_per_bar
    step_s = beat / 4
    steps_per_bar = 4 * bpb
    harm_base, harm_gain = HARMONY_SETUP[style.harmony]
    lead_base, lead_gain = LEAD_SETUP[style.lead]
    bass_base, bass_gain = BASS_SETUP[style.bass]
    seventh = style.genre in ("jazz", "lofi")
    loud = 0.6 + 0.4 * style.energy
    # The lead's motif: one or two bars of rhythm, reused through a section with new pitches.
    motif_rhythms = [LEAD_RHYTHMS[i] for i in rng.integers(0, len(LEAD_RHYTHMS), size=2)]

    steady_end = timeline.steady_duration_s  # inverts the tempo map: once, not per bar
    for section in timeline.sections:
        pattern = _drum_pattern(style, section.drum_level, steps_per_bar, bpb)
        walk = int(rng.integers(0, 3))  # lead's starting chord tone
        for b in range(section.n_bars):
            bar = section.first_bar + b
            bar_t = timeline.bar_start(bar)
            if bar_t >= steady_end:
                break
            last_bar = b == section.n_bars - 1
            # ---- drums
            for drum, hits in pattern.items():
                name = "crash" if drum == "crash_on_one" else drum
                if name == "crash" and b != 0:
                    continue
                for step, vel in hits:
                    jitter = rng.normal(0, 0.003) if name in ("hat", "shaker", "ride") else 0.0
                    v = vel * (0.9 + 0.1 * rng.random())
                    mix.add(inst.hit(name), bar_t + step * step_s + jitter, DRUM_GAINS[name] * v * loud, send=0.08)
            if b == 0 and section.index > 0 and section.drum_level == 2:
                mix.add(inst.hit("crash"), bar_t, DRUM_GAINS["crash"] * loud, send=0.2)
            if last_bar and section.drum_level >= 1 and style.kit not in ("minimal", "brushes") and rng.random() < 0.6:
                # a fill into the next section on the last beat: four 16th snares, rising
                for k in range(4):
                    mix.add(inst.hit("snare"), bar_t + ((bpb - 1) * 4 + k) * step_s, 0.25 + 0.08 * k, send=0.1)
            # ---- harmony
            degree = section.progression[bar % len(section.progression)]
            chord = chord_notes(style, degree, harm_base + 12 * section.octave_shift, seventh)
            if section.harmony_pattern == "sustain":
                for m in chord:
                    mix.add(inst.note(style.harmony, m, bpb * beat * 0.98), bar_t, harm_gain, send=0.5)
            elif section.harmony_pattern == "stabs":
                hits = [0, 2] if bpb == 4 else [0]
                for h in hits:
                    length = 2 * beat * 0.95 if bpb == 4 else bpb * beat * 0.95
                    for m in chord:
                        mix.add(inst.note(style.harmony, m, length), bar_t + h * beat, harm_gain, send=0.35)
            elif section.harmony_pattern == "strum":
                strums = [0, 1.5, 2, 3] if bpb == 4 else [0, 1, 2]
                if section.drum_level == 0:
                    strums = [0, 2] if bpb == 4 else [0]
                for h in strums:
                    for k, m in enumerate(chord):  # strings struck a few ms apart
                        mix.add(inst.note(style.harmony, m, beat * 0.9), bar_t + h * beat + 0.012 * k,
                                harm_gain * (1.0 if h == int(h) else 0.7), send=0.3)
            else:  # arpeggio in eighths
                arp = chord + [chord[0] + 12]
                for k in range(2 * bpb):
                    m = arp[[0, 1, 2, 3, 2, 1, 0, 2][k % 8] % len(arp)]
                    mix.add(inst.note(style.harmony if style.harmony not in ("pad", "strings") else "pluck", m,
                                      beat * 0.6), bar_t + k * beat / 2, harm_gain * 0.9, send=0.45)
            # ---- bass
            root = _degree_to_midi(style, degree, bass_base)
            if style.genre == "jazz":
                walk_notes = [root, root + (4 if style.mode == "major" else 3), root + 7, root + 5]
                for k in range(bpb):
                    mix.add(inst.note(style.bass, walk_notes[k % 4], beat * 0.9), bar_t + k * beat, bass_gain)
            elif style.energy > 0.6 or style.genre in ("rock", "funk"):
                for k in range(2 * bpb):
                    note = root + (12 if (style.genre == "funk" and k % 4 == 3) else 0)
                    mix.add(inst.note(style.bass, note, beat * 0.45), bar_t + k * beat / 2, bass_gain * (1 if k % 2 == 0 else 0.75))
            else:
                hits = [0, 2] if bpb == 4 else [0]
                for h in hits:
                    mix.add(inst.note(style.bass, root, beat * 1.9 if bpb == 4 else beat * 2.9), bar_t + h * beat, bass_gain)
            # ---- lead
            if section.lead:
                rhythm = motif_rhythms[b % 2]
                tones = chord_notes(style, degree, lead_base, False)
                scale_pos = walk
                for onset, length in rhythm:
                    if onset >= 2 * bpb:
                        continue
                    scale_pos = int(np.clip(scale_pos + rng.choice([-1, 0, 1, 1, 2]), 0, 4))
                    pitches = tones + [tones[0] + 12, tones[1] + 12]
                    m = pitches[scale_pos]
                    mix.add(inst.note(style.lead, m, length * beat / 2 * 0.95), bar_t + onset * beat / 2,
                            lead_gain * (0.85 + 0.15 * rng.random()), send=0.4)

    ir = _reverb_ir(style, rng)
    wet = signal.oaconvolve(mix.wet_send.astype(np.float64), ir)[:n]
    out = mix.dry.astype(np.float64) + 0.6 * wet
    out = _highpass(out, 30)  # no DC / sub-rumble
    return master(out, timeline.duration_s)


def master(x: np.ndarray, duration_s: float) -> np.ndarray:
    """Level to TARGET_RMS_DBFS, soft-limit peaks to PEAK_LIMIT, short fade in/out. Never clips."""
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    x = x * (10 ** (TARGET_RMS_DBFS / 20) / rms)
    # soft knee above 0.7: tanh keeps peaks below PEAK_LIMIT without flattening the body
    knee = 0.7
    over = np.abs(x) > knee
    x[over] = np.sign(x[over]) * (knee + (PEAK_LIMIT - knee) * np.tanh((np.abs(x[over]) - knee) / (PEAK_LIMIT - knee)))
    fade_in = int(0.01 * SAMPLE_RATE)
    fade_out = int(min(0.25, duration_s / 10) * SAMPLE_RATE)
    x[:fade_in] *= np.linspace(0, 1, fade_in)
    x[-fade_out:] *= np.linspace(1, 0, fade_out)
    return x.astype(np.float32)


def write_wav(path: str, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM mono WAV (stdlib `wave`; no extra dependency)."""
    import wave

    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(pcm.tobytes())


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Read a 16-bit PCM WAV as float32 mono in [-1, 1] and its sample rate."""
    import wave

    with wave.open(str(path), "rb") as fh:
        if fh.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported (sample width {fh.getsampwidth()} bytes)")
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        channels = fh.getnchannels()
        rate = fh.getframerate()
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate
