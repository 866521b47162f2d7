"""The fixed style-tag vocabulary of the global parse level (docs/paper.md §1: "emotion/style tags, ≤ 50").

The paper takes its tags from a music classifier; this project fixes a vocabulary instead, so that
the runtime can store each tag's text embedding in the bundle (docs/decisions.md) and so that
the synthetic data generator (`vem-synth`) and the style head speak the same words.

Tags are lower-case single words, grouped by what they describe. A sample carries a few of them
(one genre, one or two moods, an instrument or two, a pace word).
"""

from __future__ import annotations

# Order matters: a tag's index is its class id in the style head and in the bundle's tag table.
TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "mood": (
        "calm",
        "energetic",
        "happy",
        "sad",
        "dark",
        "bright",
        "tense",
        "romantic",
        "epic",
        "playful",
        "mysterious",
        "dreamy",
        "uplifting",
        "aggressive",
    ),
    "genre": (
        "electronic",
        "acoustic",
        "cinematic",
        "pop",
        "rock",
        "ambient",
        "jazz",
        "lofi",
        "funk",
        "orchestral",
    ),
    "instrument": (
        "piano",
        "guitar",
        "synth",
        "strings",
        "bells",
        "pads",
        "bass",
        "drums",
    ),
    "pace": (
        "slow",
        "moderate",
        "fast",
    ),
}

TAG_VOCABULARY: tuple[str, ...] = tuple(tag for group in TAG_GROUPS.values() for tag in group)
TAG_INDEX: dict[str, int] = {tag: i for i, tag in enumerate(TAG_VOCABULARY)}
TAG_GROUP_OF: dict[str, str] = {tag: group for group, tags in TAG_GROUPS.items() for tag in tags}

assert len(TAG_VOCABULARY) == len(set(TAG_VOCABULARY)), "duplicate tag in TAG_GROUPS"
assert 20 <= len(TAG_VOCABULARY) <= 50, "the paper's tag set has at most 50 tags"


def normalise_tags(tags: str | list[str] | tuple[str, ...]) -> list[str]:
    """Split a comma-separated string (or clean a list): strip, lower-case, drop empties and repeats."""
    if isinstance(tags, str):
        tags = tags.split(",")
    seen: list[str] = []
    for tag in tags:
        word = str(tag).strip().lower()
        if word and word not in seen:
            seen.append(word)
    return seen


def unknown_tags(tags: list[str] | tuple[str, ...], vocabulary: tuple[str, ...] | list[str] = TAG_VOCABULARY) -> list[str]:
    """The tags that are not in the vocabulary, in their given order."""
    known = set(vocabulary)
    return [tag for tag in tags if tag not in known]
