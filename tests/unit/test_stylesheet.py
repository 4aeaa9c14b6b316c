"""The stylesheets' colours meet WCAG 2.2 AA, and their headings are sized by level.

threshold.css, with the admin portal's portal.css after it, is read as text by a small parser
(rules, @media blocks, custom properties) and every text colour is paired with every background
it can be painted on:

- the element's own background: one set in the same rule, or by a rule for the same element
  (``.button.primary`` for ``.button.primary:hover``), or by a more specific rule that may
  match it too;
- otherwise any background that can enclose it: every background in the stylesheet except
  those of controls (buttons, badges, inputs), which hold only their own label; a rule that
  names a control as an ancestor (``.button .icon``) is paired with the control's background;
- the colour is inherited by the element's descendants, which may carry an "open" background
  of their own (one whose rule sets no colour, such as a card): paired with those too, unless
  the element is a control.

Links the stylesheet does not colour keep the browser's colours (#0000ee, visited #551a8b),
which are checked like any other. Contrast is WCAG 2.x's: relative luminance of sRGB
(https://www.w3.org/TR/WCAG22/#dfn-relative-luminance), (L1 + 0.05) / (L2 + 0.05), at least
4.5:1 for text (1.4.3) and 3:1 for focus outlines against what surrounds them (1.4.11).
Disabled controls are exempt (1.4.3), so ``:disabled`` rules are not checked.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_THRESHOLD = Path(__file__).resolve().parents[2] / "threshold"
# Every page's, and the admin portal's, which its pages load after it (with its colours).
STYLESHEETS = (
    _THRESHOLD / "web" / "static" / "threshold" / "threshold.css",
    _THRESHOLD / "portal" / "static" / "threshold" / "portal.css",
)


def stylesheets() -> str:
    """The stylesheets as one, in the order pages load them."""
    return "\n".join(sheet.read_text() for sheet in STYLESHEETS)


TEXT_MINIMUM = 4.5  # WCAG 2.2 SC 1.4.3, normal-size text
NON_TEXT_MINIMUM = 3.0  # WCAG 2.2 SC 1.4.11, focus indicators
# Selectors of elements that hold only their own label: their background is not a surface for
# other text.
CONTROLS = {"button", "input", "select", "textarea", ".button", ".link-button", ".badge"}
USER_AGENT_LINKS = ["#0000ee", "#551a8b"]  # Chromium's and Firefox's unvisited and visited links
USER_AGENT_TEXT = "#000000"
USER_AGENT_CANVAS = "#ffffff"
NAMED_COLOURS = {"white": "#ffffff", "black": "#000000"}
NO_COLOUR = {"none", "transparent", "inherit", "currentcolor", "initial", "unset"}


# --- Contrast -----------------------------------------------------------------------------------

RGB = tuple[float, float, float]


def parse_colour(text: str) -> RGB | None:
    """sRGB in 0..1 for #rgb, #rrggbb, rgb() and the named colours used; None for no colour."""
    text = text.strip().lower()
    if text in NO_COLOUR:
        return None
    text = NAMED_COLOURS.get(text, text)
    if re.fullmatch(r"#[0-9a-f]{3}", text):
        text = "#" + "".join(digit * 2 for digit in text[1:])
    match = re.fullmatch(
        r"rgba?\(\s*(\d+)[\s,]+(\d+)[\s,]+(\d+)\s*(?:[,/]\s*([\d.]+%?))?\s*\)", text
    )
    if re.fullmatch(r"#[0-9a-f]{6}", text):
        red, green, blue = (int(text[i : i + 2], 16) for i in (1, 3, 5))
        return (red / 255, green / 255, blue / 255)
    if match and (match[4] is None or match[4] in ("1", "100%")):
        red, green, blue = (int(match[i]) for i in (1, 2, 3))
        return (red / 255, green / 255, blue / 255)
    raise ValueError(f"a colour this test cannot check (translucent or unknown): {text!r}")


def relative_luminance(colour: RGB) -> float:
    def linear(channel: float) -> float:
        return channel / 12.92 if channel <= 0.04045 else ((channel + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in colour)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast_ratio(first: RGB, second: RGB) -> float:
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_ratio_matches_wcag_reference_values() -> None:
    black, white = parse_colour("#000"), parse_colour("#ffffff")
    assert black is not None
    assert white is not None
    assert contrast_ratio(black, white) == pytest.approx(21.0)
    assert contrast_ratio(white, white) == pytest.approx(1.0)
    # #767676 on white is the classic lightest grey that passes AA (4.54:1).
    grey = parse_colour("rgb(118, 118, 118)")
    assert grey is not None
    assert contrast_ratio(grey, white) == pytest.approx(4.54, abs=0.01)
    with pytest.raises(ValueError, match="a colour this test cannot check"):
        parse_colour("rgba(0, 0, 0, 0.5)")
    with pytest.raises(ValueError, match="a colour this test cannot check"):
        load_rules(".x { background: rebeccapurple; }")  # unknown: an error, never skipped
    [rule] = load_rules(".x { outline: 3px solid #fff; background: none; }")
    assert rule.outlines == [(1.0, 1.0, 1.0)]
    assert rule.backgrounds == []


# --- Parsing ------------------------------------------------------------------------------------

SIMPLE_SELECTOR = re.compile(
    r"""::?[\w-]+(?:\((?:[^()]|\([^()]*\))*\))?   # pseudo-class or pseudo-element, maybe with (...)
      | \[[^\]]*\]                               # attribute
      | [.#][\w-]+                               # class or id
      | [\w-]+ | \*                              # type or universal
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Selector:
    """One complex selector: its compounds, the last (the key) being the element styled."""

    text: str
    compounds: tuple[frozenset[str], ...]

    @classmethod
    def parse(cls, text: str) -> Selector:
        # Combinators (descendant, >, +, ~) all separate compounds; which one does not matter here.
        parts = re.split(r"\s*[>+~]\s*|\s+(?![^(]*\))(?![^\[]*\])", text.strip())
        compounds = []
        for part in filter(None, parts):
            simple = SIMPLE_SELECTOR.findall(part)
            assert "".join(simple) == part, f"cannot parse the selector {text!r} ({part!r})"
            compounds.append(frozenset(simple))
        return cls(text.strip(), tuple(compounds))

    @property
    def key(self) -> frozenset[str]:
        """The key compound without its pseudo-element: the element whose box is painted."""
        return frozenset(s for s in self.compounds[-1] if not s.startswith("::"))

    @property
    def ancestors(self) -> tuple[frozenset[str], ...]:
        return self.compounds[:-1]

    @property
    def is_control(self) -> bool:
        return bool(self.key & CONTROLS)

    @property
    def is_disabled_state(self) -> bool:
        return any(":disabled" in s for s in self.compounds[-1])


@dataclass
class Rule:
    selector: Selector
    declarations: dict[str, str]
    colours: list[RGB] = field(default_factory=list)  # text colours (resolved)
    backgrounds: list[RGB] = field(default_factory=list)  # background colours (resolved)
    outlines: list[RGB] = field(default_factory=list)


def _strip_comments(css: str) -> str:
    return re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)


def _blocks(css: str) -> list[tuple[str, str]]:
    """Top-level ``prelude { body }`` pairs, braces in strings and nested blocks respected."""
    blocks, depth, start, prelude_end, quote = [], 0, 0, 0, ""
    for index, char in enumerate(css):
        if quote:
            quote = "" if char == quote and css[index - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char == "{":
            if depth == 0:
                prelude_end = index
            depth += 1
        elif char == "}":
            depth -= 1
            assert depth >= 0, "unbalanced braces in the stylesheet"
            if depth == 0:
                blocks.append((css[start:prelude_end].strip(), css[prelude_end + 1 : index]))
                start = index + 1
    assert depth == 0, "the stylesheet ends inside a rule"
    assert not css[start:].strip(), "the stylesheet ends inside a rule"
    return blocks


def _declarations(body: str) -> dict[str, str]:
    declarations = {}
    for part in re.split(r";(?![^(]*\))", body):
        if part.strip():
            name, _, value = part.partition(":")
            declarations[name.strip().lower()] = value.replace("!important", "").strip()
    return declarations


def _split_selector_list(prelude: str) -> list[str]:
    return [s for s in re.split(r",(?![^(]*\))", prelude) if s.strip()]


def parse_stylesheet(css: str) -> list[tuple[Selector, dict[str, str]]]:
    """(selector, declarations) for every style rule, @media blocks flattened."""
    rules = []
    for prelude, body in _blocks(_strip_comments(css)):
        if prelude.startswith("@media") or prelude.startswith("@supports"):
            rules.extend(parse_stylesheet(body))
        elif prelude.startswith("@"):
            continue  # @font-face, @keyframes, ...: no text on a background
        else:
            declarations = _declarations(body)
            rules.extend(
                (Selector.parse(text), declarations) for text in _split_selector_list(prelude)
            )
    return rules


def _resolve(value: str, properties: dict[str, set[str]]) -> set[str]:
    """Every value ``value`` can take, var() replaced (conservatively: by every definition)."""
    match = re.search(r"var\(\s*(--[\w-]+)\s*(?:,\s*([^()]*))?\)", value)
    if not match:
        return {value}
    options = properties.get(match[1]) or ({match[2]} if match[2] else set())
    assert options, f"{match[1]} is used but never defined"
    return set().union(
        *(
            _resolve(value[: match.start()] + option + value[match.end() :], properties)
            for option in options
        )
    )


# What a background or outline shorthand may hold besides a colour.
SHORTHAND_KEYWORDS = {
    "none", "auto", "solid", "dashed", "dotted", "double", "groove", "ridge", "inset", "outset",
    "thin", "medium", "thick", "repeat", "no-repeat", "repeat-x", "repeat-y", "center", "top",
    "bottom", "left", "right", "fixed", "scroll", "local", "cover", "contain",
}  # fmt: skip


def _shorthand_colours(value: str) -> list[RGB]:
    """The colours in a ``background`` or ``outline`` value; anything unknown is an error."""
    if re.search(r"url\(|gradient\(", value):
        raise ValueError(f"an image background this test cannot check: {value!r}")
    colours = []
    for token in re.findall(r"[\w#.%-]+\([^)]*\)|[^\s]+", value):
        if token.lower() in SHORTHAND_KEYWORDS or re.fullmatch(r"-?[\d.]+[a-z%]*", token):
            continue
        colour = parse_colour(token)
        colours += [colour] if colour else []
    return colours


def load_rules(css: str) -> list[Rule]:
    parsed = parse_stylesheet(css)
    properties: dict[str, set[str]] = {}
    for _, declarations in parsed:
        for name, value in declarations.items():
            if name.startswith("--"):
                properties.setdefault(name, set()).add(value)
    rules = []
    for selector, declarations in parsed:
        rule = Rule(selector, declarations)
        for name, value in declarations.items():
            for resolved in _resolve(value, properties) if not name.startswith("--") else ():
                if name == "color":
                    colour = parse_colour(resolved)
                    rule.colours += [colour] if colour else []
                elif name in ("background", "background-color"):
                    rule.backgrounds += _shorthand_colours(resolved)
                elif name in ("outline", "outline-color"):
                    rule.outlines += _shorthand_colours(resolved)
        rules.append(rule)
    return rules


# --- Pairs --------------------------------------------------------------------------------------

ROOTS = {":root", "html", "body"}


def _is_root(selector: Selector) -> bool:
    return len(selector.compounds) == 1 and selector.key <= ROOTS and bool(selector.key)


@dataclass(frozen=True)
class Pair:
    text: str  # the rule whose colour it is
    background: str  # the rule whose background it is
    colour: RGB
    on: RGB

    @property
    def ratio(self) -> float:
        return contrast_ratio(self.colour, self.on)

    def __str__(self) -> str:
        def hex_(rgb: RGB) -> str:
            return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)

        return (
            f"{self.text} ({hex_(self.colour)}) on {self.background} ({hex_(self.on)}): "
            f"{self.ratio:.2f}:1"
        )


def _surfaces(rules: list[Rule]) -> list[Rule]:
    """Backgrounds that any text may be painted over: every one but a labelled control's."""
    return [r for r in rules if r.backgrounds and not (r.selector.is_control and r.colours)]


def _own_backgrounds(text: Rule, rules: list[Rule]) -> tuple[list[Rule], bool]:
    """Rules whose background can be the element's own, and whether it always has one."""
    always, maybe = [], []
    for rule in rules:
        if not rule.backgrounds:
            continue
        same_element = rule.selector.key <= text.selector.key and rule.selector.ancestors in (
            (),
            text.selector.ancestors,
        )
        if rule is text or same_element:
            always.append(rule)
        elif text.selector.key <= rule.selector.key and not _is_root(rule.selector):
            maybe.append(rule)  # a more specific rule: the element may match it too
    return always + maybe, bool(always)


def _enclosing_controls(text: Rule, rules: list[Rule]) -> list[Rule]:
    """Controls with a background that the selector names as an ancestor."""
    return [
        rule
        for rule in rules
        if rule.backgrounds
        and rule.selector.is_control
        and any(rule.selector.key <= a or a <= rule.selector.key for a in text.selector.ancestors)
    ]


def text_pairs(rules: list[Rule]) -> list[Pair]:
    text_rules = [r for r in rules if r.colours and not r.selector.is_disabled_state]
    if not any(_is_root(r.selector) for r in text_rules):
        text_rules.append(Rule(Selector.parse(":root"), {}, colours=[_rgb(USER_AGENT_TEXT)]))
    links_coloured = any(
        r.selector.key in ({"a"}, {"a", ":link"}, {"a", ":any-link"}) and not r.selector.ancestors
        for r in text_rules
    )
    if not links_coloured:
        text_rules.append(
            Rule(Selector.parse("a"), {}, colours=[_rgb(c) for c in USER_AGENT_LINKS])
        )
    backgrounds = [r for r in rules if r.backgrounds]
    if not any(_is_root(r.selector) for r in backgrounds):
        canvas = Rule(Selector.parse(":root"), {}, backgrounds=[_rgb(USER_AGENT_CANVAS)])
        backgrounds.append(canvas)
    surfaces = _surfaces(backgrounds)
    open_surfaces = [r for r in surfaces if not r.colours]

    pairs = []
    for text in text_rules:
        own, always = _own_backgrounds(text, backgrounds)
        under = own if always else own + surfaces + _enclosing_controls(text, backgrounds)
        if not text.selector.is_control:
            under += open_surfaces  # what descendants inheriting the colour may carry
        for background in {id(r): r for r in under}.values():
            for colour, on in itertools.product(text.colours, background.backgrounds):
                pairs.append(Pair(text.selector.text, background.selector.text, colour, on))
    return pairs


def _rgb(text: str) -> RGB:
    colour = parse_colour(text)
    assert colour is not None
    return colour


# --- The tests ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return load_rules(stylesheets())


def test_every_text_colour_meets_wcag_aa_on_every_background_it_can_sit_on(
    rules: list[Rule],
) -> None:
    pairs = text_pairs(rules)
    # The test reads the stylesheet whole: its pages, cards, notices and buttons are all there,
    # and links are checked on the error notice (where the walk-through measured 4.48:1).
    assert {":root", ".card", ".notice.error", ".button.primary"} <= {p.background for p in pairs}
    assert any("a" in Selector.parse(p.text).key and p.background == ".notice.error" for p in pairs)
    failing = sorted({str(pair) for pair in pairs if pair.ratio < TEXT_MINIMUM})
    assert not failing, "below 4.5:1:\n" + "\n".join(failing)


def test_focus_outlines_stand_out_from_every_surface(rules: list[Rule]) -> None:
    backgrounds = _surfaces([r for r in rules if r.backgrounds])
    outlines = [r for r in rules if r.outlines]
    assert outlines, "focused controls and links have a visible outline"
    failing = sorted(
        f"{rule.selector.text} outline on {surface.selector.text}: {contrast_ratio(o, b):.2f}:1"
        for rule in outlines
        for surface in backgrounds
        for o, b in itertools.product(rule.outlines, surface.backgrounds)
        if contrast_ratio(o, b) < NON_TEXT_MINIMUM
    )
    assert not failing, "below 3:1:\n" + "\n".join(failing)


def test_the_checker_finds_a_link_too_faint_for_its_notice() -> None:
    css = """
    :root { --ink: #1d2330; --link: #1f5eff; --alert: #fdecea; }
    :root { color: var(--ink); background: #fff; }
    .card { background: var(--paper, #ffffff); }
    .notice.error { background: var(--alert); color: #b3261e; }
    .notice a { color: var(--link); }
    .button.primary { background: var(--link); color: white; }
    """
    failing = [str(p) for p in text_pairs(load_rules(css)) if p.ratio < TEXT_MINIMUM]
    # #1f5eff measures 4.48:1 on #fdecea: the notice link the walk-through found.
    assert failing == [".notice a (#1f5eff) on .notice.error (#fdecea): 4.48:1"]


def test_the_checker_pairs_inherited_colours_and_user_agent_links() -> None:
    css = """
    .banner { background: #767676; color: #ffffff; }
    .panel { background: #eeeeee; }
    .button { background: #333333; color: #eeeeee; }
    """
    pairs = {(p.text, p.background) for p in text_pairs(load_rules(css))}
    # The banner's white is inherited by a panel inside it; links are the browser's blue.
    assert (".banner", ".panel") in pairs
    assert ("a", ".banner") in pairs
    assert ("a", ".panel") in pairs
    # A button's background holds only its label.
    assert not any(background == ".button" and text != ".button" for text, background in pairs)


# --- Headings -----------------------------------------------------------------------------------

# Chromium's default heading sizes, in em of the parent (assumed 1rem here).
USER_AGENT_HEADINGS = {"h1": 2.0, "h2": 1.5, "h3": 1.17, "h4": 1.0, "h5": 0.83, "h6": 0.67}


def heading_sizes(css: str) -> dict[str, set[float]]:
    """Every font size (rem) each heading level can have: its own rule's and any override."""
    sizes: dict[str, set[float]] = {level: set() for level in USER_AGENT_HEADINGS}
    for selector, declarations in parse_stylesheet(css):
        levels = [s for s in selector.key if s in USER_AGENT_HEADINGS]
        assert not (levels and "font" in declarations), f"{selector.text}: use font-size"
        if levels and "font-size" in declarations:
            value = declarations["font-size"]
            match = re.fullmatch(r"([\d.]+)rem", value)
            assert match, f"{selector.text}: heading sizes are in rem, not {value!r}"
            sizes[levels[0]].add(float(match[1]))
    return {level: found or {USER_AGENT_HEADINGS[level]} for level, found in sizes.items()}


def test_headings_are_sized_by_level() -> None:
    sizes = heading_sizes(stylesheets())
    levels = list(USER_AGENT_HEADINGS)
    inverted = [
        f"{higher} can be {min(sizes[higher])}rem, {lower} {max(sizes[lower])}rem"
        for higher, lower in itertools.pairwise(levels)
        if min(sizes[higher]) <= max(sizes[lower])
    ]
    assert not inverted, "\n".join(inverted)
