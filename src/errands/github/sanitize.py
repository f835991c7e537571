"""Issue and comment text is written by strangers: make what reaches the agent what a human
reading the issue on GitHub sees.

GitHub renders neither HTML comments nor zero-width characters, and bidi controls reorder
what is shown; each is a known way to hide instructions from the reviewer that a model would
still read ("Trojan Source", hidden-comment prompt injection). We strip them.
"""

from __future__ import annotations

import re
import unicodedata

# <!-- ... --> including unterminated ones (GitHub hides everything after an unclosed one).
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
# Zero-width and invisible formatting characters, bidi embeddings/overrides/isolates and marks.
_INVISIBLE = re.compile(
    "["
    "\u200b-\u200f"  # zero-width space/joiners, LRM, RLM
    "\u202a-\u202e"  # LRE, RLE, PDF, LRO, RLO
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u2069"  # LRI, RLI, FSI, PDI
    "\u061c"  # Arabic letter mark
    "\ufeff"  # zero-width no-break space (BOM)
    "\u00ad"  # soft hyphen
    "\u180e"  # Mongolian vowel separator
    "]"
)
# Unicode "tag" characters (U+E0000 block) can spell out invisible ASCII.
_TAGS = re.compile("[\U000e0000-\U000e007f]")


def sanitize(text: str | None) -> str:
    """Text with hidden HTML comments, invisible and bidi control characters removed."""
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\x00", "")
    text = _HTML_COMMENT.sub("", text)
    text = _INVISIBLE.sub("", text)
    text = _TAGS.sub("", text)
    # Any other format character (category Cf) is invisible too; keep the rest.
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return text.strip()
