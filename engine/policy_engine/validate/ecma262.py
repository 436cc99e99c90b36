"""ECMA-262 regular expressions, JSON Schema's ``pattern`` dialect, run with Python's ``re``.

Python's ``re`` differs from ECMA-262 (``\\d`` matches Bengali digits, ``$`` accepts a trailing
newline, ``\\p{Letter}`` is an error), so the python backend parses each pattern with the
ECMA-262 grammar (Unicode mode) and writes the ``re`` source that matches the same strings:
``translate_ecma_regex``, ``compile_ecma_regex`` (cached) and ``is_ecma_regex`` (the ``regex``
format). ``EcmaRegexError`` is a pattern that is not ECMA-262; ``UnsupportedRegexError`` one
that is but that ``re`` cannot run. Standard library only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

#: A code point set as sorted, disjoint, inclusive ``(low, high)`` ranges.
_Ranges = tuple[tuple[int, int], ...]

_MAX_CODE_POINT = 0x10FFFF
_DIGITS: _Ranges = ((0x30, 0x39),)
_WORD: _Ranges = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
# ECMA-262 WhiteSpace and LineTerminator: the Zs category plus TAB, VT, FF, ZWNBSP, LF, CR, LS, PS.
_SPACE: _Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
    (0xFEFF, 0xFEFF),
)
_LINE_TERMINATORS = "[\\n\\r\\u2028\\u2029]"
_WORD_CLASS = "[0-9A-Z_a-z]"
_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))"
_NOT_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))"
_CONTROL_ESCAPES = {"f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}
_CLASS_ESCAPES: dict[str, tuple[_Ranges, bool]] = {
    "d": (_DIGITS, False),
    "D": (_DIGITS, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
}
_MAX_REPEAT = 2**32 - 2  # Python's limit (sre MAXREPEAT - 1); jsonschema-rs refuses more too

# General_Category values and their aliases (ECMA-262 table "Value aliases and canonical values
# for General_Category"), as sets of two-letter Unicode categories.
_GC_GROUPS: dict[str, tuple[str, ...]] = {
    "L": ("Lu", "Ll", "Lt", "Lm", "Lo"),
    "LC": ("Lu", "Ll", "Lt"),
    "M": ("Mn", "Mc", "Me"),
    "N": ("Nd", "Nl", "No"),
    "P": ("Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po"),
    "S": ("Sm", "Sc", "Sk", "So"),
    "Z": ("Zs", "Zl", "Zp"),
    "C": ("Cc", "Cf", "Cs", "Co", "Cn"),
}
_GC_ALIASES: dict[str, str] = {
    "Letter": "L",
    "Cased_Letter": "LC",
    "Uppercase_Letter": "Lu",
    "Lowercase_Letter": "Ll",
    "Titlecase_Letter": "Lt",
    "Modifier_Letter": "Lm",
    "Other_Letter": "Lo",
    "Mark": "M",
    "Combining_Mark": "M",
    "Nonspacing_Mark": "Mn",
    "Spacing_Mark": "Mc",
    "Enclosing_Mark": "Me",
    "Number": "N",
    "Decimal_Number": "Nd",
    "digit": "Nd",
    "Letter_Number": "Nl",
    "Other_Number": "No",
    "Punctuation": "P",
    "punct": "P",
    "Connector_Punctuation": "Pc",
    "Dash_Punctuation": "Pd",
    "Open_Punctuation": "Ps",
    "Close_Punctuation": "Pe",
    "Initial_Punctuation": "Pi",
    "Final_Punctuation": "Pf",
    "Other_Punctuation": "Po",
    "Symbol": "S",
    "Math_Symbol": "Sm",
    "Currency_Symbol": "Sc",
    "Modifier_Symbol": "Sk",
    "Other_Symbol": "So",
    "Separator": "Z",
    "Space_Separator": "Zs",
    "Line_Separator": "Zl",
    "Paragraph_Separator": "Zp",
    "Other": "C",
    "Control": "Cc",
    "cntrl": "Cc",
    "Format": "Cf",
    "Surrogate": "Cs",
    "Private_Use": "Co",
    "Unassigned": "Cn",
}
_GC_SINGLE = frozenset(c for group in _GC_GROUPS.values() for c in group)
# Binary properties ECMA-262 defines (table "Binary Unicode property aliases") that Python's
# unicodedata cannot compute: a pattern using one is valid, but the python backend cannot run it.
_BINARY_PROPERTY_NAMES = (
    "ASCII_Hex_Digit AHex Alphabetic Alpha Bidi_Control Bidi_C Bidi_Mirrored Bidi_M "
    "Case_Ignorable CI Cased Changes_When_Casefolded CWCF Changes_When_Casemapped CWCM "
    "Changes_When_Lowercased CWL Changes_When_NFKC_Casefolded CWKCF Changes_When_Titlecased "
    "CWT Changes_When_Uppercased CWU Dash Default_Ignorable_Code_Point DI Deprecated Dep "
    "Diacritic Dia Emoji Emoji_Component EComp Emoji_Modifier EMod Emoji_Modifier_Base EBase "
    "Emoji_Presentation EPres Extended_Pictographic ExtPict Extender Ext Grapheme_Base Gr_Base "
    "Grapheme_Extend Gr_Ext Hex_Digit Hex IDS_Binary_Operator IDSB IDS_Trinary_Operator IDST "
    "ID_Continue IDC ID_Start IDS Ideographic Ideo Join_Control Join_C "
    "Logical_Order_Exception LOE Lowercase Lower Math Noncharacter_Code_Point NChar "
    "Pattern_Syntax Pat_Syn Pattern_White_Space Pat_WS Quotation_Mark QMark Radical "
    "Regional_Indicator RI Sentence_Terminal STerm Soft_Dotted SD Terminal_Punctuation Term "
    "Unified_Ideograph UIdeo Uppercase Upper Variation_Selector VS XID_Continue XIDC "
    "XID_Start XIDS"
)
_BINARY_PROPERTIES_UNSUPPORTED = frozenset(_BINARY_PROPERTY_NAMES.split())
_WHITE_SPACE_PROPERTY: _Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)


class EcmaRegexError(ValueError):
    """A ``pattern`` that is not an ECMA-262 regular expression (JSON Schema's regex dialect)."""


class UnsupportedRegexError(ValueError):
    """A valid ECMA-262 regular expression the python backend cannot run.

    Python's ``re`` has no Unicode script data and no variable-width lookbehind; the python
    backend refuses such a schema rather than match differently from ECMA-262.
    """


def _normalize(ranges: Iterable[tuple[int, int]]) -> _Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: _Ranges) -> _Ranges:
    out: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= _MAX_CODE_POINT:
        out.append((start, _MAX_CODE_POINT))
    return tuple(out)


def _code_point_source(code_point: int) -> str:
    return f"\\U{code_point:08x}" if code_point > 0xFFFF else f"\\u{code_point:04x}"


def _class_source(ranges: _Ranges) -> str:
    """A Python character class matching exactly ``ranges``."""
    if not ranges:
        return "(?!)"
    parts = [
        _code_point_source(low)
        if low == high
        else f"{_code_point_source(low)}-{_code_point_source(high)}"
        for low, high in ranges
    ]
    return "[" + "".join(parts) + "]"


@functools.cache
def _general_categories() -> Mapping[str, _Ranges]:
    """Every two-letter Unicode category as ranges (one pass over all code points, ~0.3 s)."""
    import unicodedata

    found: dict[str, list[tuple[int, int]]] = {}
    current, start = unicodedata.category("\x00"), 0
    for code_point in range(1, _MAX_CODE_POINT + 2):
        category = unicodedata.category(chr(code_point)) if code_point <= _MAX_CODE_POINT else ""
        if category != current:
            found.setdefault(current, []).append((start, code_point - 1))
            current, start = category, code_point
    return {name: tuple(ranges) for name, ranges in found.items()}


def _property_ranges(text: str) -> _Ranges:
    """The code points of ``\\p{text}``; ``EcmaRegexError`` for a name ECMA-262 does not know."""
    name, sep, value = text.partition("=")
    if sep:
        if name in ("General_Category", "gc"):
            return _general_category(value, text)
        if name in ("Script", "sc", "Script_Extensions", "scx"):
            if not re.fullmatch(r"[A-Za-z_]+", value):
                raise EcmaRegexError(f"\\p{{{text}}} names no script")
            raise UnsupportedRegexError(
                f"\\p{{{text}}}: the python backend has no Unicode script data"
            )
        raise EcmaRegexError(f"\\p{{{text}}} is not a Unicode property ECMA-262 knows")
    if name == "Any":
        return ((0, _MAX_CODE_POINT),)
    if name == "ASCII":
        return ((0, 0x7F),)
    if name == "Assigned":
        return _complement(_general_categories().get("Cn", ()))
    if name in ("White_Space", "space"):
        return _WHITE_SPACE_PROPERTY
    if name in _BINARY_PROPERTIES_UNSUPPORTED:
        raise UnsupportedRegexError(
            f"\\p{{{text}}}: the python backend cannot compute this Unicode property"
        )
    return _general_category(name, text)


def _general_category(value: str, text: str) -> _Ranges:
    short = _GC_ALIASES.get(value, value)
    members = _GC_GROUPS.get(short) or ((short,) if short in _GC_SINGLE else None)
    if members is None:
        raise EcmaRegexError(f"\\p{{{text}}} is not a Unicode property ECMA-262 knows")
    table = _general_categories()
    return _normalize(r for member in members for r in table.get(member, ()))


def _count_groups(source: str) -> tuple[int, frozenset[str]]:
    """How many capturing groups ``source`` has, and their names (for backreference checks)."""
    count, names, i, in_class = 0, set(), 0, False
    while i < len(source):
        char = source[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            if not source.startswith("?", i + 1):
                count += 1
            elif source.startswith("?<", i + 1) and source[i + 3 : i + 4] not in ("=", "!"):
                count += 1
                names.add(source[i + 3 : source.find(">", i + 3)])
        i += 1
    return count, frozenset(names)


class _EcmaTranslator:
    """Parses one ECMA-262 pattern (Unicode mode) and writes the Python ``re`` equivalent.

    ECMA-262 and Python differ in what ``\\d``, ``\\w``, ``\\s``, ``\\b``, ``.`` and ``$`` match,
    in escapes (``\\cX``, ``\\u{...}``, ``\\p{...}``) and in syntax Python accepts but ECMA-262
    refuses (``(?P<n>...)``, ``(?i)``, ``\\Z``): every construct is written out explicitly.
    Identity escapes of non-alphanumeric characters (``\\"``, ``\\-``) are accepted as
    jsonschema-rs accepts them.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.group_count, self.group_names = _count_groups(source)
        self.names_seen: set[str] = set()
        self.opened = 0  # capturing groups opened so far
        self.open_groups: list[int] = []
        self.dot_all = False
        self.multiline = False

    def error(self, message: str) -> EcmaRegexError:
        return EcmaRegexError(f"{message} at position {self.pos} of {self.source!r}")

    def peek(self, offset: int = 0) -> str:
        index = self.pos + offset
        return self.source[index] if index < len(self.source) else ""

    def translate(self) -> str:
        out = self.disjunction()
        if self.pos < len(self.source):
            raise self.error("unmatched ')'")
        return out

    def disjunction(self) -> str:
        alternatives = [self.alternative()]
        while self.peek() == "|":
            self.pos += 1
            alternatives.append(self.alternative())
        return "|".join(alternatives)

    def alternative(self) -> str:
        terms: list[str] = []
        while self.pos < len(self.source) and self.peek() not in "|)":
            terms.append(self.term())
        return "".join(terms)

    def term(self) -> str:
        char = self.peek()
        quantifiable = True
        if char == "^":
            self.pos += 1
            atom = f"(?:\\A|(?<={_LINE_TERMINATORS}))" if self.multiline else "\\A"
            quantifiable = False
        elif char == "$":
            self.pos += 1
            atom = f"(?=\\Z|{_LINE_TERMINATORS})" if self.multiline else "\\Z"
            quantifiable = False
        elif char == "\\" and self.peek(1) in ("b", "B"):
            atom = _WORD_BOUNDARY if self.peek(1) == "b" else _NOT_WORD_BOUNDARY
            self.pos += 2
            quantifiable = False
        elif char == "(":
            atom, quantifiable = self.group()
        elif char == ".":
            self.pos += 1
            atom = "(?s:.)" if self.dot_all else f"(?:(?!{_LINE_TERMINATORS})(?s:.))"
        elif char == "[":
            atom = self.character_class()
        elif char == "\\":
            atom = self.atom_escape()
        elif char in "*+?{":
            raise self.error("nothing to repeat")
        elif char in "}]":
            raise self.error(f"lone {char!r}")
        else:
            self.pos += 1
            atom = re.escape(char)
        quantifier = self.quantifier()
        if quantifier and not quantifiable:
            raise self.error("an assertion cannot be repeated")
        return f"(?:{atom}){quantifier}" if quantifier else atom

    def quantifier(self) -> str:
        char = self.peek()
        if char in ("*", "+", "?") and char:
            self.pos += 1
            text = char
        elif char == "{":
            match = re.compile(r"\{([0-9]+)(,([0-9]*))?\}").match(self.source, self.pos)
            if match is None:
                raise self.error("incomplete quantifier")
            low = int(match.group(1))
            high = int(match.group(3)) if match.group(3) else None
            if max(low, high or 0) > _MAX_REPEAT:
                raise self.error("repetition count too large")
            if high is not None and high < low:
                raise self.error("numbers out of order in {} quantifier")
            self.pos = match.end()
            text = f"{{{low}{',' if match.group(2) else ''}{'' if high is None else high}}}"
        else:
            return ""
        if self.peek() == "?":
            self.pos += 1
            text += "?"
        return text

    def group(self) -> tuple[str, bool]:
        source, start = self.source, self.pos
        self.pos += 1
        if source.startswith("?", self.pos):
            for opener, python in (("?=", "(?="), ("?!", "(?!"), ("?<=", "(?<="), ("?<!", "(?<!")):
                if source.startswith(opener, self.pos):
                    self.pos += len(opener)
                    return python + self.close_group() + ")", False
            if source.startswith("?:", self.pos):
                self.pos += 2
                return "(?:" + self.close_group() + ")", True
            if source.startswith("?<", self.pos):
                end = source.find(">", self.pos)
                name = source[self.pos + 2 : end] if end > 0 else ""
                if not re.fullmatch(r"[$_\w][$\w\u200c\u200d]*", name) or name[0].isdigit():
                    raise self.error("invalid capture group name")
                if name in self.names_seen:
                    raise self.error(f"duplicate capture group name {name!r}")
                self.names_seen.add(name)
                self.pos = end + 1
                return self.capture(), True
            match = re.compile(r"\?([ims]*)(?:-([ims]*))?:").match(source, self.pos)
            if match is None:
                self.pos = start
                raise self.error("invalid group")
            on, off = match.group(1), match.group(2) or ""
            flags = on + off
            if (
                len(set(flags)) != len(flags)
                or (not flags)
                or (match.group(2) is not None and not flags)
            ):
                raise self.error("invalid modifiers")
            self.pos = match.end()
            saved = (self.dot_all, self.multiline)
            self.dot_all = ("s" in on) or (self.dot_all and "s" not in off)
            self.multiline = ("m" in on) or (self.multiline and "m" not in off)
            case = ("i" if "i" in on else "") + ("-i" if "i" in off else "")
            body = self.close_group()
            self.dot_all, self.multiline = saved
            return (f"(?{case}:{body})" if case else f"(?:{body})"), True
        return self.capture(), True

    def capture(self) -> str:
        self.opened += 1
        self.open_groups.append(self.opened)
        body = self.close_group()
        self.open_groups.pop()
        return f"({body})"

    def close_group(self) -> str:
        body = self.disjunction()
        if self.peek() != ")":
            raise self.error("missing ')'")
        self.pos += 1
        return body

    def backreference(self, number: int) -> str:
        # ECMA-262: a group that has not matched (yet) matches the empty string.
        if number > self.opened or number in self.open_groups:
            return "(?:)"
        return f"(?({number})(?:\\{number})|)"

    def atom_escape(self) -> str:
        self.pos += 1
        char = self.peek()
        if char in _CLASS_ESCAPES or char in ("p", "P"):
            return _class_source(self.class_escape_ranges())
        if char.isdigit() and char != "0":
            match = re.compile(r"[0-9]+").match(self.source, self.pos)
            assert match is not None
            number = int(match.group())
            if number > self.group_count:
                raise self.error(f"backreference \\{number} to a group that does not exist")
            self.pos = match.end()
            return self.backreference(number)
        if char == "k":
            match = re.compile(r"k<([^>]*)>").match(self.source, self.pos)
            if match is None or match.group(1) not in self.group_names:
                raise self.error("\\k must name a capture group")
            self.pos = match.end()
            return self.backreference(self.group_number(match.group(1)))
        return _code_point_source(self.character_escape(in_class=False))

    def group_number(self, name: str) -> int:
        number, i, in_class = 0, 0, False
        source = self.source
        while i < len(source):
            char = source[i]
            if char == "\\":
                i += 2
                continue
            if in_class:
                in_class = char != "]"
            elif char == "[":
                in_class = True
            elif char == "(" and (
                not source.startswith("?", i + 1)
                or (source.startswith("?<", i + 1) and source[i + 3 : i + 4] not in ("=", "!"))
            ):
                number += 1
                if source.startswith(f"?<{name}>", i + 1):
                    return number
            i += 1
        raise self.error(f"no group named {name!r}")  # pragma: no cover - checked by the caller

    def class_escape_ranges(self) -> _Ranges:
        """Ranges of ``\\d \\D \\s \\S \\w \\W \\p{..} \\P{..}`` (``pos`` at the letter)."""
        char = self.peek()
        self.pos += 1
        if char in _CLASS_ESCAPES:
            ranges, negated = _CLASS_ESCAPES[char]
            return _complement(ranges) if negated else ranges
        end = self.source.find("}", self.pos)
        if self.peek() != "{" or end < 0:
            raise self.error(f"\\{char} must be followed by {{property}}")
        text = self.source[self.pos + 1 : end]
        self.pos = end + 1
        ranges = _property_ranges(text)
        return _complement(ranges) if char == "P" else ranges

    def character_escape(self, *, in_class: bool) -> int:
        """The code point of an escape (``pos`` after the backslash)."""
        char = self.peek()
        if not char:
            raise self.error("\\ at end of pattern")
        self.pos += 1
        if char in _CONTROL_ESCAPES:
            return _CONTROL_ESCAPES[char]
        if char == "c":
            letter = self.peek()
            if not (letter.isascii() and letter.isalpha()):
                raise self.error("\\c must be followed by a letter")
            self.pos += 1
            return ord(letter) % 32
        if char == "0":
            if self.peek().isdigit():
                raise self.error("octal escapes are not ECMA-262 (Unicode mode)")
            return 0
        if char == "x":
            digits = self.source[self.pos : self.pos + 2]
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
                raise self.error("\\x needs two hex digits")
            self.pos += 2
            return int(digits, 16)
        if char == "u":
            return self.unicode_escape()
        if char == "-" and in_class:
            return ord("-")
        if char.isascii() and (char.isalnum() or char == "_"):
            raise self.error(f"\\{char} is not an ECMA-262 escape")
        return ord(char)

    def unicode_escape(self) -> int:
        source = self.source
        if self.peek() == "{":
            end = source.find("}", self.pos)
            digits = source[self.pos + 1 : end] if end > 0 else ""
            if not re.fullmatch(r"[0-9A-Fa-f]+", digits) or int(digits, 16) > _MAX_CODE_POINT:
                raise self.error("invalid \\u{...} escape")
            self.pos = end + 1
            return int(digits, 16)
        digits = source[self.pos : self.pos + 4]
        if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
            raise self.error("\\u needs four hex digits")
        self.pos += 4
        value = int(digits, 16)
        trail = re.compile(r"\\u([dD][c-fC-F][0-9A-Fa-f]{2})").match(source, self.pos)
        if 0xD800 <= value <= 0xDBFF and trail is not None:
            self.pos = trail.end()
            return 0x10000 + ((value - 0xD800) << 10) + (int(trail.group(1), 16) - 0xDC00)
        return value

    def class_atom(self) -> int | _Ranges:
        char = self.peek()
        if char == "\\":
            self.pos += 1
            escape = self.peek()
            if escape in _CLASS_ESCAPES or escape in ("p", "P"):
                return self.class_escape_ranges()
            if escape == "b":
                self.pos += 1
                return 0x08
            if escape.isdigit() and escape != "0":
                raise self.error("backreferences are not allowed in a class")
            if escape in ("B", "k"):
                raise self.error(f"\\{escape} is not allowed in a class")
            return self.character_escape(in_class=True)
        self.pos += 1
        return ord(char)

    def character_class(self) -> str:
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        while True:
            if self.pos >= len(self.source):
                raise self.error("missing ']'")
            if self.peek() == "]":
                self.pos += 1
                break
            low = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.pos += 1
                high = self.class_atom()
                if not isinstance(low, int) or not isinstance(high, int):
                    raise self.error("a class escape cannot bound a range")
                if low > high:
                    raise self.error("range out of order in character class")
                ranges.append((low, high))
            elif isinstance(low, int):
                ranges.append((low, low))
            else:
                ranges.extend(low)
        result = _normalize(ranges)
        return _class_source(_complement(result) if negated else result)


@functools.lru_cache(maxsize=4096)
def translate_ecma_regex(pattern: str) -> str:
    """The Python ``re`` source that matches as the ECMA-262 regex ``pattern`` does.

    >>> translate_ecma_regex(r"^\\d$")
    '\\\\A[\\\\u0030-\\\\u0039]\\\\Z'

    ``EcmaRegexError`` when ``pattern`` is not ECMA-262 (Unicode mode), ``UnsupportedRegexError``
    when it is but Python cannot run it.
    """
    return _EcmaTranslator(pattern).translate()


@functools.lru_cache(maxsize=4096)
def compile_ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (ECMA-262) compiled for Python, cached: search with it as JSON Schema does."""
    source = translate_ecma_regex(pattern)
    try:
        return re.compile(source)
    except re.error as exc:
        # Valid ECMA-262 that sre cannot compile: a lookbehind of variable width.
        raise UnsupportedRegexError(
            f"{pattern!r}: the python backend cannot run it ({exc})"
        ) from exc
    except (OverflowError, RecursionError) as exc:
        raise UnsupportedRegexError(f"{pattern!r}: too large for the python backend") from exc


def is_ecma_regex(pattern: str) -> bool:
    """Whether ``pattern`` is an ECMA-262 regular expression (the ``regex`` format)."""
    try:
        translate_ecma_regex(pattern)
    except UnsupportedRegexError:
        return True
    except (EcmaRegexError, RecursionError):
        return False
    return True
