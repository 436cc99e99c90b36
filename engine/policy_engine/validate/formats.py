"""The python backend's format checks (``date-time``, ``email``, ``uri``, ...), from the RFCs.

jsonschema's own checkers disagree with the specification in places (lax hostnames, Python's
``$`` accepting a trailing newline); these follow the RFC each format names, so the python
backend answers as jsonschema-rs does. ``FORMAT_CHECKS`` maps a format name to the check of a
string value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from policy_engine.validate.ecma262 import is_ecma_regex

# The python backend's format checks, written from the RFCs each format names, with ASCII digits
# only and no trailing newline (``re.fullmatch``; Python's ``$`` would accept one).
_DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]+)?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
_DATE_RE = re.compile(_DATE)
_TIME_RE = re.compile(_TIME)
_DATE_TIME_RE = re.compile(_DATE + "[Tt]" + _TIME)
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR_DATE = r"(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)"
_DURATION_RE = re.compile(f"P(?:{_DUR_DATE}(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)")
_UUID_RE = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
_JSON_POINTER = r"(?:/(?:[^/~]|~[01])*)*"
_JSON_POINTER_RE = re.compile(_JSON_POINTER)
_RELATIVE_JSON_POINTER_RE = re.compile(f"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})")
_HOST_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM_RE = re.compile(f"{_ATEXT}+(?:\\.{_ATEXT}+)*")
_IDN_DOT_ATOM_RE = re.compile(
    r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+(?:\.(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])+)*"
)
_QUOTED_RE = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"')
_IDN_QUOTED_RE = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|[^\x00-\x7f]|\\[\x20-\x7e])*"')
_GENERAL_LITERAL_RE = re.compile(r"[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+")
_IDN_DOTS = re.compile("[.\u3002\uff0e\uff61]")

# RFC 3986 (URIs) and RFC 3987 (IRIs): the ABNF as regular expressions.
_UCSCHAR = (
    "\u00a0-\ud7ff\uf900-\ufdcf\ufdf0-\uffef\U00010000-\U0001fffd\U00020000-\U0002fffd"
    "\U00030000-\U0003fffd\U00040000-\U0004fffd\U00050000-\U0005fffd\U00060000-\U0006fffd"
    "\U00070000-\U0007fffd\U00080000-\U0008fffd\U00090000-\U0009fffd\U000a0000-\U000afffd"
    "\U000b0000-\U000bfffd\U000c0000-\U000cfffd\U000d0000-\U000dfffd\U000e1000-\U000efffd"
)
_IPRIVATE = "\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd"


def _uri_regexes(iri: bool) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(absolute, reference) patterns of RFC 3986 URIs, or RFC 3987 IRIs when ``iri``."""
    unreserved = "A-Za-z0-9._~\\-" + (_UCSCHAR if iri else "")
    pct = "%[0-9A-Fa-f]{2}"
    sub_delims = "!$&'()*+,;="
    pchar = f"(?:[{unreserved}{sub_delims}:@]|{pct})"
    segment = f"{pchar}*"
    segment_nz = f"{pchar}+"
    segment_nz_nc = f"(?:[{unreserved}{sub_delims}@]|{pct})+"
    userinfo = f"(?:[{unreserved}{sub_delims}:]|{pct})*"
    ip_literal = r"\[(?P<ip>[^\]/?#@\[]*)\]"
    reg_name = f"(?:[{unreserved}{sub_delims}]|{pct})*"
    authority = f"(?:{userinfo}@)?(?:{ip_literal}|{reg_name})(?::[0-9]*)?"
    path_abempty = f"(?:/{segment})*"
    path_absolute = f"/(?:{segment_nz}(?:/{segment})*)?"
    path_rootless = f"{segment_nz}(?:/{segment})*"
    path_noscheme = f"{segment_nz_nc}(?:/{segment})*"
    query_chars = f"(?:{pchar}|[/?{_IPRIVATE if iri else ''}])*"
    fragment = f"(?:{pchar}|[/?])*"
    tail = f"(?:\\?{query_chars})?(?:#{fragment})?"
    scheme = "[A-Za-z][A-Za-z0-9+.-]*"
    hier = f"(?://{authority}{path_abempty}|{path_absolute}|{path_rootless}|)"
    # A reference is a URI or a relative reference; the authority is written once (one group).
    reference = (
        f"(?:(?:{scheme}:)?//{authority}{path_abempty}"
        f"|{scheme}:(?:{path_absolute}|{path_rootless}|)|{path_absolute}|{path_noscheme}|)"
    )
    return re.compile(f"{scheme}:{hier}{tail}"), re.compile(f"{reference}{tail}")


_URI_RE, _URI_REFERENCE_RE = _uri_regexes(iri=False)
_IRI_RE, _IRI_REFERENCE_RE = _uri_regexes(iri=True)

# RFC 6570 (URI templates), level 4.
_UT_LITERAL = (
    "(?:[\\x21\\x23\\x24\\x26-\\x3b\\x3d\\x3f-\\x5b\\x5d\\x5f\\x61-\\x7a\\x7e"
    f"{_UCSCHAR}{_IPRIVATE}]|%[0-9A-Fa-f]{{2}})"
)
_UT_VARCHAR = "(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})"
_UT_VARSPEC = f"{_UT_VARCHAR}(?:\\.?{_UT_VARCHAR})*(?::[1-9][0-9]{{0,3}}|\\*)?"
_UT_EXPRESSION = f"\\{{[+#./;?&=,!@|]?{_UT_VARSPEC}(?:,{_UT_VARSPEC})*\\}}"
_URI_TEMPLATE_RE = re.compile(f"(?:{_UT_LITERAL}|{_UT_EXPRESSION})*")


def _is_leap_year(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12 or day < 1:
        return False
    days = (31, 29 if _is_leap_year(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    return day <= days[month - 1]


def _valid_time(groups: Sequence[str | None]) -> bool:
    """RFC 3339 ``full-time`` fields: a leap second only at 23:59:60 UTC."""
    hour, minute, second = int(groups[0] or 0), int(groups[1] or 0), int(groups[2] or 0)
    if hour > 23 or minute > 59 or second > 60:
        return False
    offset = 0
    if groups[4] is not None:
        off_hour, off_minute = int(groups[5] or 0), int(groups[6] or 0)
        if off_hour > 23 or off_minute > 59:
            return False
        offset = (off_hour * 60 + off_minute) * (1 if groups[4] == "+" else -1)
    if second == 60:
        return (hour * 60 + minute - offset) % (24 * 60) == 23 * 60 + 59
    return True


def _check_date(value: str) -> bool:
    match = _DATE_RE.fullmatch(value)
    return match is not None and _valid_date(*(int(g) for g in match.groups()))


def _check_time(value: str) -> bool:
    match = _TIME_RE.fullmatch(value)
    return match is not None and _valid_time(match.groups())


def _check_date_time(value: str) -> bool:
    match = _DATE_TIME_RE.fullmatch(value)
    if match is None:
        return False
    groups = match.groups()
    return _valid_date(int(groups[0]), int(groups[1]), int(groups[2])) and _valid_time(groups[3:])


def _check_duration(value: str) -> bool:
    return _DURATION_RE.fullmatch(value) is not None


def _check_uuid(value: str) -> bool:
    return _UUID_RE.fullmatch(value) is not None


def _check_json_pointer(value: str) -> bool:
    return _JSON_POINTER_RE.fullmatch(value) is not None


def _check_relative_json_pointer(value: str) -> bool:
    return _RELATIVE_JSON_POINTER_RE.fullmatch(value) is not None


def _check_ipv4(value: str) -> bool:
    import ipaddress

    if not re.fullmatch(r"[0-9.]+", value):
        return False
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def _check_ipv6(value: str) -> bool:
    import ipaddress

    if not re.fullmatch(r"[0-9A-Fa-f:.]+", value):
        return False  # no zone id ("%eth0"), no whitespace, ASCII only
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _check_ip_literal(text: str) -> bool:
    """The inside of a URI's ``[...]`` host: an IPv6 address or an IPvFuture."""
    if re.fullmatch(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9._~!$&'()*+,;=:-]+", text):
        return True
    return _check_ipv6(text)


def _uri_check(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        match = pattern.fullmatch(value)
        if match is None:
            return False
        ip = match.group("ip")
        return ip is None or _check_ip_literal(ip)

    return check


def _check_uri_template(value: str) -> bool:
    return _URI_TEMPLATE_RE.fullmatch(value) is not None


def _check_ascii_label(label: str) -> bool:
    """An RFC 1123 label; an A-label (``xn--``) must decode to a valid IDNA2008 U-label."""
    if _HOST_LABEL_RE.fullmatch(label) is None:
        return False
    if label[2:4] != "--":
        return True
    if label[:4].lower() != "xn--":
        return False  # "--" in the 3rd and 4th position is reserved for A-labels (RFC 5891)
    import idna

    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


def _check_hostname(value: str) -> bool:
    if not value.isascii() or len(value) > 253:
        return False
    return all(_check_ascii_label(label) for label in value.split("."))


def _check_idn_hostname(value: str) -> bool:
    import idna

    labels = _IDN_DOTS.split(value)
    if not value or any(not label for label in labels):
        return False  # empty labels, including a trailing dot
    try:
        encoded = [
            label if label.isascii() else idna.alabel(label).decode("ascii") for label in labels
        ]
        if any(_has_rtl(label) for label in labels):
            # RFC 5893: once one label is right-to-left, the Bidi rule applies to every label.
            for label in labels:
                idna.check_bidi(label, check_ltr=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return all(_check_ascii_label(label) for label in encoded) and len(".".join(encoded)) <= 253


def _has_rtl(label: str) -> bool:
    import unicodedata

    return any(unicodedata.bidirectional(c) in ("R", "AL", "AN") for c in label)


def _check_email(value: str, *, idn: bool = False) -> bool:
    """RFC 5321 ``Mailbox`` (RFC 6531 with non-ASCII text when ``idn``)."""
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return False
    atom, quoted = (_IDN_DOT_ATOM_RE, _IDN_QUOTED_RE) if idn else (_DOT_ATOM_RE, _QUOTED_RE)
    if atom.fullmatch(local) is None and quoted.fullmatch(local) is None:
        return False
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            return _check_ipv6(literal[5:])
        if re.fullmatch(r"[0-9.]+", literal):
            return _check_ipv4(literal)
        return _GENERAL_LITERAL_RE.fullmatch(literal) is not None
    if not idn:
        return _check_hostname(domain)
    import unicodedata

    # RFC 6531 domains are compared after normalization: a decomposed "é" is the same label.
    return _check_idn_hostname(unicodedata.normalize("NFC", domain))


def _check_idn_email(value: str) -> bool:
    return _check_email(value, idn=True)


#: Format name -> check of a string value; other values always pass (JSON Schema §7.1).
FORMAT_CHECKS: Mapping[str, Callable[[str], bool]] = {
    "date": _check_date,
    "time": _check_time,
    "date-time": _check_date_time,
    "duration": _check_duration,
    "uuid": _check_uuid,
    "json-pointer": _check_json_pointer,
    "relative-json-pointer": _check_relative_json_pointer,
    "ipv4": _check_ipv4,
    "ipv6": _check_ipv6,
    "uri": _uri_check(_URI_RE),
    "uri-reference": _uri_check(_URI_REFERENCE_RE),
    "iri": _uri_check(_IRI_RE),
    "iri-reference": _uri_check(_IRI_REFERENCE_RE),
    "uri-template": _check_uri_template,
    "hostname": _check_hostname,
    "idn-hostname": _check_idn_hostname,
    "email": _check_email,
    "idn-email": _check_idn_email,
    "regex": is_ecma_regex,
}
