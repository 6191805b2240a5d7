"""Text normalisation applied identically at training and at serving time."""

from __future__ import annotations

import html
import re

_URL = re.compile(r"(?:https?://|www\.)\S+|\{URL\}", re.IGNORECASE)
_MENTION = re.compile(r"@\w+|\{USERNAME\}|@anonymized_account")
# A reply to many people opens with a run of handles: 15 of them are 60 tokens, a whole 64-token window, and
# push the words out. One mask says it (TweetEval offensive tweets over 64 tokens: 18.1% -> 14.4%).
_MASK_RUN = re.compile(r"(?<!\w)(@USER|URL)(?!\w)(?:[ \t,:]*\1(?!\w))+")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_NEWLINES = re.compile(r"\n{3,}")

URL_TOKEN = "URL"
USER_TOKEN = "@USER"

# What normalize does, as the number a model records (meta.json, checkpoint.json) so that it is served and
# finished on text normalised as it was trained on: 1 kept a run of masks as it came (models trained before
# MASK_RUN_SINCE); 2 collapses it into one mask.
NORMALIZATION_VERSION = 2
NORMALIZATION_VERSIONS = (1, 2)
MASK_RUN_SINCE = "2026-12-02T17:25:23+00:00"


def normalize(text: str, version: int = NORMALIZATION_VERSION) -> str:
    """Decode HTML entities, mask URLs and user handles (a run of them as one), collapse whitespace.

    Case and punctuation are kept: both carry signal (caps-lock anger, question marks). ``version``: as
    :data:`NORMALIZATION_VERSION` was (an older model is served on the text it was trained on).
    """
    if version not in NORMALIZATION_VERSIONS:
        raise ValueError(
            f"normalisation version {version!r} is unknown here (this code knows {NORMALIZATION_VERSIONS})"
        )
    text = html.unescape(str(text))
    text = text.replace("|LBR|", "\n")
    text = _URL.sub(f" {URL_TOKEN} ", text)
    text = _MENTION.sub(f" {USER_TOKEN} ", text)
    text = _SPACES.sub(" ", text)
    if version >= 2:
        text = _MASK_RUN.sub(r"\1", text)
    text = _NEWLINES.sub("\n\n", text)
    return text.strip()
