"""The PII guard's patterns and validators (the scanner and the policies are in ``pii.py``, whose docstring
explains every rule): the kinds, the regular expressions that find candidates, the national-id checks of
``python-stdnum``, and the small shape checks the scanner calls.  Private to ``pii.py``."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from typing import Literal, get_args

import phonenumbers
from stdnum.br import cpf as _cpf
from stdnum.es import dni as _dni
from stdnum.es import nie as _nie
from stdnum.fr import nir as _nir
from stdnum.in_ import aadhaar as _aadhaar
from stdnum.it import codicefiscale as _codicefiscale
from stdnum.us import ssn as _ssn

Kind = Literal["URL_CREDENTIALS", "EMAIL", "IBAN", "NATIONAL_ID", "CREDIT_CARD", "IP_ADDRESS", "PHONE"]


KINDS: tuple[Kind, ...] = get_args(Kind)  # also the overlap priority, highest first


PiiPolicy = Literal["off", "flag", "redact", "reject"]


POLICIES: tuple[PiiPolicy, ...] = get_args(PiiPolicy)


HEADER = "scorer.pii.kinds"


DEFAULT_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "IN", "AU")


PLACEHOLDERS: dict[str, str] = {kind: f"<{kind}>" for kind in KINDS}


_PRIORITY = {kind: i for i, kind in enumerate(KINDS)}


_FOLDABLE = re.compile(r"(?![0-9])\d|[\uff01-\uff5e]")  # other scripts' digits, full-width ASCII (U+FF01-FF5E)


_TRIGGER = re.compile(r"[0-9@:]")


_DIGIT = re.compile(r"[0-9]")


_ANCHOR = re.compile(r"[0-9]+|::")


_MARGIN = 48  # longer than any digit pattern's match (an IBAN with spaces: 42)


_DENSE = re.compile(r"[0-9](?:[ \-./()]{0,3}[0-9]){6}")  # 7 digits close together: phones, cards, IBANs, ids


_MASK = re.compile(r"[xX*#•_.\-\s]+|[<\[{(].*|\$\{.*|%[A-Za-z_]+%")


_EMAIL = re.compile(
    r"(?<![\w.%+\-/])([\w.%+\-]+)@((?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24})(?![\w\-]|\.[^\W_])"
)


_RESERVED_DOMAIN = re.compile(r"(?:^|\.)(?:example\.(?:com|net|org)|example|test|invalid|localhost)$", re.IGNORECASE)


_RETINA = re.compile(r"[0-9]+x\.", re.IGNORECASE)


_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{1,15}://[^\s<>\"'`]+")


_URL_TRAIL = ".,;:!?)]}'\""


_SECRET_PARAM = re.compile(r"[?&#;]([\w.\-]+)=([^&#;\s]+)")


_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(?:token|key|secret|password|passwd|pwd|auth|signature|sig|session|sessionid|sid)$"
    r"|^(?:apikey|accesstoken|authtoken|sessionid|passwd|password)$",
    re.IGNORECASE,
)


_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?: ?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")


_CARD = re.compile(r"(?<![\w.,/+\-])[0-9](?:[ \-]?[0-9]){12,18}(?![\w]|[.,/\-][0-9])")


_CARD_GROUPS = {(4, 4, 4, 4), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3), (4, 4, 4, 4, 1), (4, 4, 4, 4, 2),
                (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 4)}  # fmt: skip


_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![\w]|\.[0-9]|/[0-9])")  # not a CIDR network


_VERSION_BEFORE = re.compile(
    r"\b(?:v|version|ver\.?|release|build|rev\.?|firmware|patch|section|chapter|clause|step)[\s:#]*$|§\s*$", re.I
)


_CODE_BEFORE = re.compile(r"\b(?:isbn(?:-?1[03])?|ean(?:-?13)?|upc|gtin|barcode|sku|asin|issn)[\s:#]*$", re.I)


_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:[0-9]{1,3}\.){3}[0-9]{1,3}|[0-9A-Fa-f]{0,4})(?![\w:]|\.\w)"
)


_DOC_NETS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


_PHONE_BUDGET = 256  # phonenumbers matcher calls per text (~25 us each)


_PHONE_WINDOW = re.compile(r"(?<![\w+.,#])(?:\+|\b00)?[ (]*[0-9][0-9 \t\-./()]{5,24}[0-9]")


_NOT_PHONE = re.compile(  # year ranges, dotted quads, the SSN shape (an invalid SSN is no phone number), reference
    # numbers (12345678-90); then anything that starts with a date (07.01.2024 23:49)
    r"(?:\(?(?:1[5-9]|20)[0-9]{2} ?[-/] ?(?:1[5-9]|20)[0-9]{2}\)?|[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
    r"|[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{5,}-[0-9]{1,2})$"
    r"|[0-3]?[0-9]([./-])[01]?[0-9]\1(?:1[5-9]|20)[0-9]{2}|(?:1[5-9]|20)[0-9]{2}([./-])[01]?[0-9]\2[0-3]?[0-9]"
)


_GROUP_BEFORE = re.compile(r"(?:[0-9][ \-.]|[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4})* )$")  # glued to digits / an IBAN head


_GROUP_AFTER = re.compile(r"[ \-.][0-9]")


_Check = Callable[[str], bool]


# The codice fiscale first: the only one without a 7-digit run (the others run only where _DENSE matches).
_NATIONAL: tuple[tuple[re.Pattern[str], _Check], ...] = (
    (
        re.compile(r"(?<!\w)[A-Z]{6}[0-9LMNP-V]{2}[A-EHLMPR-T][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z](?!\w)"),
        _codicefiscale.is_valid,
    ),
    (re.compile(r"(?<![\w\-])[0-9]{3}([\- ])[0-9]{2}\1[0-9]{4}(?![\w]|-[0-9])"), _ssn.is_valid),
    (
        re.compile(r"(?<![\w])[12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2[AB]) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}(?!\w)"),
        _nir.is_valid,
    ),
    (re.compile(r"(?<![\w\-])[0-9]{8}-?[A-Z](?!\w)"), _dni.is_valid),
    (re.compile(r"(?<![\w\-])[XYZ]-?[0-9]{7}-?[A-Z](?!\w)"), _nie.is_valid),
    (re.compile(r"(?<![\w.\-])[0-9]{3}\.[0-9]{3}\.[0-9]{3}-[0-9]{2}(?![\w]|[.\-][0-9])"), _cpf.is_valid),
    (re.compile(r"(?<![\w\-])[2-9][0-9]{3}([ \-])[0-9]{4}\1[0-9]{4}(?![\w]|[\-][0-9])"), _aadhaar.is_valid),
)


def _is_mask(value: str) -> bool:
    return _MASK.fullmatch(value) is not None


def _fold(text: str) -> str:
    """Other scripts' decimal digits and full-width ASCII as ASCII, one character for one (the offsets stay valid)."""
    chars = list(text)
    for m in _FOLDABLE.finditer(text):
        c = m.group()
        chars[m.start()] = str(unicodedata.digit(c)) if c.isdecimal() else chr(ord(c) - 0xFEE0)
    return "".join(chars)


def _windows(text: str) -> list[tuple[int, int]]:
    """Merged spans of ``_MARGIN`` characters around every digit run (and ``::``).  Every digit pattern is shorter than
    the margin and holds a digit (an IPv6 address a digit or ``::``), so each of its matches lies inside one span."""
    out: list[tuple[int, int]] = []
    for m in _ANCHOR.finditer(text):
        lo, hi = max(0, m.start() - _MARGIN), min(len(text), m.end() + _MARGIN)
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _glued(text: str, start: int, end: int) -> bool:
    """True when a digit pattern is part of something else: digit groups (or an IBAN head) right before or after it,
    or a product-code word (ISBN, EAN, UPC ...) right before it."""
    if _GROUP_BEFORE.search(text, max(0, start - 20), start) or _GROUP_AFTER.match(text, end):
        return True
    return _CODE_BEFORE.search(text, max(0, start - 12), start) is not None


def _phone_shape(raw: str, before: str, trunk0: bool) -> bool:
    """Shape rules on top of phonenumbers' validity: no versions, dotted quads, decimals, dotted dates, year ranges,
    bare serials; national formats start with the region's trunk 0 where it has one and have at most 12 digits."""
    if _VERSION_BEFORE.search(before) or _NOT_PHONE.match(raw):
        return False
    if len(re.split(r"[^0-9]+", raw.rstrip(") "))[-1]) < 2:  # ends in a one-digit group: an ISBN-10 check digit
        return False
    national = raw.lstrip("( ")
    if national.startswith(("+", "00", "011")):
        return True
    if (trunk0 and not national.startswith("0")) or len(_DIGIT.findall(raw)) > 12:
        return False
    if raw.isdigit():  # an unformatted national number: only with a trunk 0 or as a 10-digit NANP number
        return raw.startswith("0") or len(raw) == 10
    if "." in raw:
        groups = [g for g in re.split(r"[^0-9]+", raw) if g]
        return all(len(g) >= 2 for g in groups) and len(groups) > 2
    return True


def _is_mobile(number: phonenumbers.PhoneNumber) -> bool:
    return phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE


def _personal(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_reserved:
        return False
    return not any(addr in net for net in _DOC_NETS if net.version == addr.version)
