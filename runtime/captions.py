"""Words for the parse when no captioner runs on the device.

The paper captions the video and each shot with a multimodal LLM; the runtime has none, so the
global caption and the storyboard descriptions are written from the tags the style head predicts
(or the user gives). Training feeds the same sentences for a share of its samples, so the model
has seen this register of text (vem.training uses these functions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .tags import TAG_GROUPS, TAG_VOCABULARY


def tags_from_probabilities(probabilities: np.ndarray, second_mood_threshold: float = 0.5) -> list[str]:
    """One tag per group (the most probable mood, genre, instrument and pace), plus a second mood
    when it is likely too: the shape of the tag sets vem-synth writes."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(TAG_VOCABULARY),):
        raise ValueError(f"expected {len(TAG_VOCABULARY)} tag probabilities, got shape {probabilities.shape}")
    chosen: list[str] = []
    for group, words in TAG_GROUPS.items():
        indices = [TAG_VOCABULARY.index(word) for word in words]
        order = sorted(indices, key=lambda i: -probabilities[i])
        chosen.append(TAG_VOCABULARY[order[0]])
        if group == "mood" and len(order) > 1 and probabilities[order[1]] > second_mood_threshold:
            chosen.append(TAG_VOCABULARY[order[1]])
    return chosen


def _join(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def caption_from_tags(tags: Sequence[str]) -> str:
    groups = {group: [t for t in tags if t in words] for group, words in TAG_GROUPS.items()}
    mood = _join(groups["mood"]) or "a"
    genre = _join(groups["genre"])
    instruments = _join(groups["instrument"])
    pace = _join(groups["pace"])
    text = f"{mood} {genre} music".replace("  ", " ").strip()
    if instruments:
        text += f" with {instruments}"
    if pace:
        text += f" at a {pace} pace"
    return text[0].upper() + text[1:] + "."


def describe_storyboard(index: int, count: int, tags: Sequence[str]) -> str:
    position = "opening" if index == 0 else ("closing" if index == count - 1 else "middle")
    caption = caption_from_tags(tags)
    return f"The {position} shot ({index + 1} of {count}): {caption[0].lower()}{caption[1:]}"
