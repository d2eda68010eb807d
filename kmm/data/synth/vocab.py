"""The closed vocabulary of kmm-shapes: shapes, colours, actions and how captions say them."""

import re

SHAPES = ("circle", "square", "triangle", "star")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 190),
    "white": (245, 245, 245),
}
ACTIONS = ("move_left", "move_right", "move_up", "move_down", "grow", "shrink", "rotate", "still")
BACKGROUNDS = ("solid", "gradient", "noise", "checkerboard")

PHRASES = {
    "move_left": ("moves left", "slides to the left", "travels leftward", "drifts left"),
    "move_right": ("moves right", "slides to the right", "travels rightward", "drifts right"),
    "move_up": ("moves up", "rises", "travels upward", "drifts up"),
    "move_down": ("moves down", "falls", "sinks", "drifts down"),
    "grow": ("grows", "gets bigger", "expands", "grows larger"),
    "shrink": ("shrinks", "gets smaller", "contracts", "shrinks down"),
    "rotate": ("rotates", "spins", "turns around", "rotates in place"),
    "still": ("stays still", "does not move", "remains still", "sits still"),
}
JOINERS = (" and ", " while ")
# What each action looks like played backwards (a clip of the generator, reversed, is a
# clip the generator could have made with this label): the quickstart's augmentation.
TIME_REVERSAL = (("move_left", "move_right"), ("move_up", "move_down"), ("grow", "shrink"), ("rotate", "rotate"),
                 ("still", "still"))  # fmt: skip


def allowed(shape, action):
    """A circle never rotates (it would look still)."""
    return not (shape == "circle" and action == "rotate")


ALL_TRIPLES = tuple((c, s, a) for c in COLORS for s in SHAPES for a in ACTIONS if allowed(s, a))


def reverse_caption(caption):
    """The caption of the same clip played backwards: each action phrase becomes a phrase of
    its `TIME_REVERSAL` partner (same wording slot), e.g. "a red circle moves left" ->
    "a red circle moves right".

    >>> reverse_caption("a red star grows larger while a blue square falls")
    'a red star shrinks down while a blue square rises'
    """
    partner = {}
    for a, b in TIME_REVERSAL:
        partner[a], partner[b] = b, a
    swap = {p: PHRASES[partner[action]][i] for action, phrases in PHRASES.items() for i, p in enumerate(phrases)}
    # Longest phrases first, so "grows larger" is not read as "grows" + " larger".
    pattern = "|".join(re.escape(p) for p in sorted(swap, key=len, reverse=True))
    return re.sub(rf"\b(?:{pattern})\b", lambda m: swap[m.group(0)], caption)


def caption_content(caption):
    """What a caption says, whatever its wording and clause order: its sorted
    "colour shape action" clauses. Two kmm-shapes captions with the same content describe
    clips no model can tell apart (training keeps them from being each other's negatives).

    >>> caption_content("a red star grows larger while a blue square falls")
    'blue square move_down; red star grow'
    >>> caption_content("a blue square sinks and a red star expands")
    'blue square move_down; red star grow'
    """
    action = {phrase: name for name, phrases in PHRASES.items() for phrase in phrases}
    clauses = re.split("|".join(map(re.escape, JOINERS)), caption.strip().lower())
    content = []
    for clause in clauses:
        words = clause.split(" ", 3)  # "a", colour, shape, phrase
        if len(words) != 4 or words[0] != "a" or words[3] not in action:
            raise ValueError(f"Not a kmm-shapes caption clause: {clause!r} (in {caption!r})")
        content.append(f"{words[1]} {words[2]} {action[words[3]]}")
    return "; ".join(sorted(content))
