"""PII stage: check that "anonymized" text really is, before it is scored (issue 11).

``PiiScanner.scan(text)`` finds residual personal data; ``apply_policy`` turns the findings into what the worker and the
HTTP server do (``off`` | ``flag`` | ``redact`` | ``reject``).  A ``Finding`` is a kind and offsets, internal only:
never log it; the kinds (the ``scorer.pii.kinds`` header) may be logged.  Each candidate comes from a regular expression
and must pass a validator:

* EMAIL: ``local@domain.tld``, Unicode letters allowed.  Not: masked local parts (``xxx@``), ``icon@2x.png``, and the
  reserved domains pseudonymizers use (RFC 2606/6761: ``example.com|net|org``, ``.example``, ``.test``, ``.invalid``,
  ``.localhost``).
* PHONE: ``phonenumbers.PhoneNumberMatcher``, ``Leniency.VALID``, on windows of 7-17 digits; ``+``/``00``/``011``
  numbers are international, national formats are tried for each of ``DEFAULT_REGIONS`` (the longest match wins).
  Because most digit strings are a valid number somewhere: a national number must start with the trunk ``0`` where the
  region has one (GB, DE, FR, AU; IN except mobiles) and have at most 12 digits; an unformatted one must start with
  ``0`` or have 10 digits (a bare Spanish ``612345678`` is a known miss); dotted forms need 3+ groups of 2+ digits.
  Not phones: year ranges, dates, dotted quads, the SSN shape, reference numbers (``12345678-90``), a last group of one
  digit (ISBN-10), and numbers after ``v``/``version``/``build``/``section``/... (see ``_VERSION_BEFORE``).
* CREDIT_CARD: 13-19 digits, contiguous or grouped as printed (4-4-4-4[-n], Amex 4-6-5, Diners 4-6-4), first digit 2-6
  (the major networks), Luhn-valid (``stdnum.luhn``), not one repeated digit.
* IBAN: contiguous or in groups of four, any case, ``stdnum.iban`` (mod-97 and the country's BBAN format); the longest
  valid prefix ending at a group's end (the pattern may run on into the next words).
* IP_ADDRESS: IPv4 dotted quads and IPv6, validated with ``ipaddress``.  Not: unspecified, loopback, multicast,
  reserved (netmasks), CIDR networks (``10.0.0.0/8``), documentation ranges, IPv6 with < 3 non-empty groups, quads of
  one-digit numbers (``1.2.3.4`` is a version or section far more often than an address), and quads after a version
  word (``v10.2.30.4``, ``build 74.0.2365.141``).
* URL_CREDENTIALS: a ``scheme://`` URL with ``user:password@``, or a query/fragment parameter named like a secret
  (``token``, ``key``, ``secret``, ``password``, ``pwd``, ``auth``, ``sig``, ``session``, ``sid``, ``apikey``, or ending
  in ``_token``, ``-key`` ...) with a non-placeholder value; the span is the whole URL.  A bare user name is not one.
* NATIONAL_ID: formats distinctive enough to keep precision, checked by ``python-stdnum``: US SSN (3-2-4 with dashes or
  spaces; not the textbook 123-45-6789), French NIR, Spanish DNI/NIE, Italian codice fiscale, Brazilian CPF
  (``000.000.000-00``), Indian Aadhaar (4-4-4).  Not included: bare 9-11 digit ids with a weak check (Canadian SIN,
  Dutch BSN, German Steuer-ID), which would cost precision on review text.

Placeholders (``<EMAIL>``, ``[NAME]``, ``{{PHONE}}``, ``XXXX-XXXX``, ``***-**-****``, ``**** 1234`` ...) are not
findings: they have too few digits for any digit pattern, and e-mail parts, URL passwords and tokens made of mask
characters (``x X * # •``), starting with a bracket or ``${``, or of the form ``%NAME%`` are skipped.  Overlaps go to
the kind listed first in ``KINDS`` (the stronger check), so an IBAN's digits are not also a card.  Digit patterns that
are part of something else are not findings: digit groups or an IBAN head (``NL21 ABNA``) right before/after them, or
a product-code word before them (ISBN, EAN, UPC, GTIN, barcode, SKU, ASIN, ISSN).  Decimal digits of other scripts
and full-width ASCII (U+FF01-U+FF5E) are read as their ASCII forms, one character for one.

Cost: a text with no digit, ``@`` or ``:`` costs one character-class search.  Digit patterns run only within 48
characters of a digit; the phone matcher (pure Python, ~25 us per window and region) at most 256 times per text, after
which phone-shaped windows are taken without validation (a table of numbers, not a review): a 64 KiB text stays bounded.

Libraries: ``phonenumbers`` (port of Google's libphonenumber) and ``python-stdnum`` (checksums and formats) are small,
pure Python, need no data download and are well kept.  Rejected: Presidio analyzer (2.2.366, tried here).  Its
``AnalyzerEngine`` tries to download a spaCy model at start (fails offline); it pulls in spaCy (~300 MB); its e-mail
recognizer calls ``tldextract``, which fetches the public-suffix list at run time; its context words need the spaCy
pipeline; and its pattern recognizers used alone cost ~0.9 ms per short review, far over the budget.  They wrap the
same validations (Luhn, IBAN mod-97, phonenumbers) that are used here directly.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from stdnum import iban as _iban
from stdnum import luhn as _luhn

from stream_worker.pipeline.pii_patterns import (
    _CARD,
    _CARD_GROUPS,
    _DENSE,
    _DIGIT,
    _EMAIL,
    _FOLDABLE,
    _IBAN,
    _IPV4,
    _IPV6,
    _NATIONAL,
    _PHONE_BUDGET,
    _PHONE_WINDOW,
    _PRIORITY,
    _RESERVED_DOMAIN,
    _RETINA,
    _SECRET_NAME,
    _SECRET_PARAM,
    _TRIGGER,
    _URL,
    _URL_TRAIL,
    _VERSION_BEFORE,
    _Check,
    _fold,
    _glued,
    _is_mask,
    _is_mobile,
    _personal,
    _phone_shape,
    _windows,
)
from stream_worker.pipeline.pii_patterns import (  # the stage's public names, re-exported
    DEFAULT_REGIONS as DEFAULT_REGIONS,
)
from stream_worker.pipeline.pii_patterns import (
    HEADER as HEADER,
)
from stream_worker.pipeline.pii_patterns import (
    KINDS as KINDS,
)
from stream_worker.pipeline.pii_patterns import (
    PLACEHOLDERS as PLACEHOLDERS,
)
from stream_worker.pipeline.pii_patterns import (
    POLICIES as POLICIES,
)
from stream_worker.pipeline.pii_patterns import (
    Kind as Kind,
)
from stream_worker.pipeline.pii_patterns import (
    PiiPolicy as PiiPolicy,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data: its kind and the ``[start, end)`` span in the text.  Internal: never log it."""

    kind: Kind
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PiiResult:
    """What a policy made of one text: the text to score, the kinds found with counts, and whether to reject it."""

    text: str
    counts: tuple[tuple[str, int], ...]
    rejected: bool

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.counts)

    @property
    def header(self) -> str:
        """The ``scorer.pii.kinds`` header value: sorted kind names, comma separated ("" when none)."""
        return ",".join(self.kinds)


class PiiScanner:
    """Detector of residual personal data.  Stateless after construction: one instance may serve many threads."""

    def __init__(self, regions: Sequence[str] = DEFAULT_REGIONS, kinds: Iterable[Kind] = KINDS) -> None:
        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone regions: {unknown}")
        self._regions = tuple(regions) or ("US",)
        # Regions whose national format starts with a trunk "0" (GB, DE, FR, AU ...): a national-format candidate
        # without it is not taken for one of their numbers (DE would otherwise accept most long digit strings).
        # India's mobile numbers are customarily written without it (98765 43210): they are let through below.
        meta = {r: phonenumbers.PhoneMetadata.metadata_for_region(r) for r in self._regions}
        self._trunk0 = {r: m is not None and m.national_prefix == "0" for r, m in meta.items()}
        self._idd00 = [r for r, m in meta.items() if m is not None and m.international_prefix == "00"]
        self._idd00 = self._idd00 or [self._regions[0]]
        self._kinds = frozenset(kinds)
        bad = self._kinds - set(KINDS)
        if bad:
            raise ValueError(f"unknown PII kinds: {sorted(bad)}")
        for region in self._regions:  # load the numbering plans now (~0.1 s), not on the first message with a number
            example = phonenumbers.example_number(region)
            if example is not None:
                fmt = phonenumbers.PhoneNumberFormat
                text = ", ".join(phonenumbers.format_number(example, f) for f in (fmt.NATIONAL, fmt.INTERNATIONAL))
                list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))

    def scan(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, sorted by position."""
        if not text.isascii() and _FOLDABLE.search(text):
            text = _fold(text)
        if _TRIGGER.search(text) is None:
            return []
        found: list[Finding] = []
        want = self._kinds
        if "://" in text and "URL_CREDENTIALS" in want:
            found += self._urls(text)
        if "@" in text and "EMAIL" in want:
            found += self._emails(text)
        budget = [_PHONE_BUDGET]  # phonenumbers calls left for this text
        for lo, hi in _windows(text):  # digit patterns run only near digits: long texts with few numbers stay cheap
            if "IP_ADDRESS" in want:
                found += self._ipv4(text, lo, hi)
                if ":" in text:
                    found += self._ipv6(text, lo, hi)
            dense = _DENSE.search(text, lo, hi) is not None  # 7 digits close together
            if "NATIONAL_ID" in want:
                found += self._national(text, lo, hi, _NATIONAL if dense else _NATIONAL[:1])
            if dense:
                if "IBAN" in want:
                    found += self._ibans(text, lo, hi)
                if "CREDIT_CARD" in want:
                    found += self._cards(text, lo, hi)
                if "PHONE" in want:
                    found += self._phones(text, lo, hi, found, budget)
        return _resolve(found) if len(found) > 1 else found

    # -- one method per kind ----------------------------------------------------------------------------------------

    def _emails(self, text: str) -> list[Finding]:
        out = []
        for m in _EMAIL.finditer(text):
            local, domain = m.group(1), m.group(2)
            if local.startswith(".") or local.endswith(".") or ".." in local or _is_mask(local):
                continue
            if _RESERVED_DOMAIN.search(domain) or _RETINA.match(domain) or _is_mask(domain.rsplit(".", 1)[0]):
                continue
            out.append(Finding("EMAIL", m.start(), m.end()))
        return out

    def _urls(self, text: str) -> list[Finding]:
        out = []
        for m in _URL.finditer(text):
            rest = m.group().split("://", 1)[1]
            authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
            _user, colon, password = authority.rsplit("@", 1)[0].partition(":") if "@" in authority else ("", "", "")
            if (colon and password and not _is_mask(password)) or any(
                _SECRET_NAME.search(p.group(1)) and not _is_mask(p.group(2)) for p in _SECRET_PARAM.finditer(rest)
            ):
                out.append(Finding("URL_CREDENTIALS", m.start(), m.start() + len(m.group().rstrip(_URL_TRAIL))))
        return out

    def _ipv4(self, text: str, lo: int, hi: int) -> list[Finding]:
        out = []
        for m in _IPV4.finditer(text, lo, hi):
            try:
                addr = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()) or not _personal(addr):
                continue
            if all(len(octet) == 1 for octet in m.group().split(".")):  # 1.2.3.4: a section or version number
                continue
            out.append(Finding("IP_ADDRESS", m.start(), m.end()))
        return out

    def _ipv6(self, text: str, lo: int, hi: int) -> list[Finding]:
        out = []
        for m in _IPV6.finditer(text, lo, hi):
            value = m.group()
            if sum(1 for g in value.split(":") if g) < 3:
                continue
            try:
                addr = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if _personal(addr):
                out.append(Finding("IP_ADDRESS", m.start(), m.end()))
        return out

    def _ibans(self, text: str, lo: int, hi: int) -> list[Finding]:
        out = []
        for m in _IBAN.finditer(text, lo, hi):
            # The pattern may run on into the words after it: try the longest valid prefix ending at a group's end.
            value = m.group()
            ends = [len(value)] + [i for i in range(len(value) - 1, 14, -1) if value[i] == " "]
            for n in ends:
                if len(value[:n].replace(" ", "")) <= 34 and _iban.is_valid(value[:n]):
                    out.append(Finding("IBAN", m.start(), m.start() + n))
                    break
        return out

    def _cards(self, text: str, lo: int, hi: int) -> list[Finding]:
        out = []
        for m in _CARD.finditer(text, lo, hi):
            value = m.group()
            groups = tuple(len(g) for g in re.split(r"[ \-]", value))
            digits = value.replace(" ", "").replace("-", "")
            if len(groups) > 1 and (groups not in _CARD_GROUPS or len(set(re.findall(r"[ \-]", value))) > 1):
                continue
            if digits[0] not in "23456" or len(set(digits)) == 1 or _glued(text, m.start(), m.end()):
                continue
            if _luhn.is_valid(digits):
                out.append(Finding("CREDIT_CARD", m.start(), m.end()))
        return out

    def _national(
        self, text: str, lo: int, hi: int, patterns: Sequence[tuple[re.Pattern[str], _Check]]
    ) -> list[Finding]:
        out = []
        for pattern, is_valid in patterns:
            for m in pattern.finditer(text, lo, hi):
                value = m.group()
                compact = value.replace(" ", "")
                if compact.replace("-", "") == "123456789" or _glued(text, m.start(), m.end()):  # the textbook SSN
                    continue
                if is_valid(compact):
                    out.append(Finding("NATIONAL_ID", m.start(), m.end()))
        return out

    def _phones(self, text: str, lo: int, hi: int, found: list[Finding], budget: list[int]) -> list[Finding]:
        out = []
        strong = sorted((f.start, f.end) for f in found if f.end > lo and f.start < hi)
        starts = [a for a, _ in strong]
        reach = list(itertools.accumulate((b for _, b in strong), max))  # furthest end among findings so far
        for w in _PHONE_WINDOW.finditer(text, lo, hi):
            digits = len(_DIGIT.findall(w.group()))
            i = bisect.bisect_right(starts, w.start())
            if not 7 <= digits <= 17 or (i and reach[i - 1] >= w.end()):
                continue  # no phone number, part of a longer number, or inside a stronger finding (card, IBAN, id)
            head = w.group().lstrip("( ")
            if head.startswith(("+", "00")):  # international: one region that dials out with 00 parses it
                regions: Sequence[str] = self._idd00[:1] if head[0] == "0" else self._regions[:1]
            else:  # national: regions with a trunk 0 only for a leading 0 (or an Indian mobile, 6-9)
                regions = [
                    r
                    for r in self._regions
                    if not self._trunk0[r] or head[0] == "0" or (r == "IN" and head[0] in "6789")
                ]
            if budget[0] <= 0:  # a table of numbers, not a review: phone-shaped windows are taken unvalidated
                if _phone_shape(w.group().strip("( )"), text[max(0, w.start() - 12) : w.start()], False):
                    out.append(Finding("PHONE", w.start(), w.end()))
                continue
            budget[0] -= len(regions)
            base = max(0, w.start() - 2)
            window = text[base : w.end() + 2]
            for region in regions:  # several regions: "00 1 ..." is a full number for GB, a partial one for US
                for pm in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.VALID):
                    start, end = base + pm.start, base + pm.end
                    if (start and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
                        continue
                    if len(_DIGIT.findall(pm.raw_string)) < 7 or _glued(text, start, end):
                        continue
                    trunk0 = self._trunk0[region] and not (region == "IN" and _is_mobile(pm.number))
                    if _phone_shape(pm.raw_string, text[max(0, start - 12) : start], trunk0):
                        out.append(Finding("PHONE", start, end))
        return out


def _resolve(found: list[Finding]) -> list[Finding]:
    """Sorted by position; wherever findings overlap, the higher-priority (then longer, then earlier) one is kept."""
    found.sort(key=lambda f: (f.start, -f.end))
    kept: list[Finding] = []
    cluster: list[Finding] = []  # findings that overlap one another, transitively; they end by cluster_end
    cluster_end = 0
    for f in [*found, None]:
        if cluster and (f is None or f.start >= cluster_end):
            chosen: list[Finding] = []
            for c in sorted(cluster, key=lambda c: (_PRIORITY[c.kind], c.start - c.end, c.start)):
                if all(c.end <= k.start or c.start >= k.end for k in chosen):
                    chosen.append(c)
            kept += sorted(chosen, key=lambda c: c.start)
            cluster = []
        if f is not None:
            cluster.append(f)
            cluster_end = max(cluster_end, f.end)
    return kept


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with every finding's span replaced by its typed placeholder (``<EMAIL>``, ``<PHONE>`` ...).

    Overlapping spans (not produced by ``scan``) are merged, so no character of any span survives.
    """
    parts: list[str] = []
    cursor = 0
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if f.start < cursor:
            cursor = max(cursor, f.end)
            continue
        parts += [text[cursor : f.start], PLACEHOLDERS[f.kind]]
        cursor = f.end
    parts.append(text[cursor:])
    return "".join(parts)


def kinds(findings: Iterable[Finding]) -> list[str]:
    """Sorted unique kind names: the value of the ``scorer.pii.kinds`` header is ``",".join(kinds(findings))``."""
    return sorted({f.kind for f in findings})


def apply_policy(text: str, policy: PiiPolicy, scanner: PiiScanner) -> PiiResult:
    """Scan ``text`` (unless ``off``) and apply ``policy``: ``flag`` scores unchanged, ``redact`` scores the redacted
    text, ``reject`` marks texts with findings as rejected.  The result never holds a found value (except in ``text``
    itself under ``flag``/``reject``, which is the caller's original)."""
    if policy == "off":
        return PiiResult(text, (), False)
    if policy not in POLICIES:
        raise ValueError(f"unknown PII policy {policy!r}; expected one of {', '.join(POLICIES)}")
    findings = scanner.scan(text)
    if not findings:
        return PiiResult(text, (), False)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.kind] = counts.get(f.kind, 0) + 1
    ordered = tuple(sorted(counts.items()))
    if policy == "redact":
        return PiiResult(redact(text, findings), ordered, False)
    return PiiResult(text, ordered, policy == "reject")
