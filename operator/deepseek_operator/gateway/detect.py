"""Detectors of sensitive data in prompts and completions, and the sensitivity score.

Pure (no I/O). Text is scanned as UTF-8 bytes; a match is a byte span plus the detector
that found it. What a caller may keep from a match is the detector's name and type and the
count: never the matched text.

Why these detectors are written here and not taken from presidio-analyzer: presidio's
pattern recognizers (with their Luhn, mod-97 and SSN validators) are what we want, but
`AnalyzerEngine` needs a spaCy language model, which these machines cannot download; the
package pulls in spaCy (~126 MB) either way; and its recognizers run Python's backtracking
`re`/`regex` engines, whose time on hostile input is not linear (e.g. an e-mail pattern
over a 1 MB run of local-part characters with no `@` rescans the run from each start:
quadratic). The detectors below are compiled with RE2 (`google-re2`, the RE2 library's
Python bindings): an automaton engine whose match time is linear in the input for every
pattern it accepts, because it has no backreferences or lookaround. So every scan here is
O(len(text) x number of detectors), on any input; the validators run only on matches,
whose length each detector bounds (`Detector.max_span`).

Without lookaround, each pattern has one capturing group (the entity) preceded by a
required context character (a non-entity character, e.g. not a digit before a card
number); scans prepend a newline so an entity can start a text. RE2's `\\b`, `\\d` and
`\\w` are ASCII: digits in other scripts (fullwidth, Arabic-Indic) are not read as digits.

A detector may `extend` a match: an opening match (a PEM `BEGIN ... PRIVATE KEY` line, the
known prefix of a token) is extended to its terminator (the `END` line; the first
character outside the token's alphabet), or to the end of the text when none comes. The
terminator pattern is what `Detector.until` holds.

Score (`score`): noisy-OR of the matches, each a detector-weighted piece of evidence:

    sensitivity = 1 - prod over detectors d that fired of (1 - weight_d) ** count_d

0 when nothing fired; in [0, 1]; more matches or heavier detectors raise it; one match of
a weight-1 detector (a private key) makes it 1. Weights are how sure a match is that
something sensitive was disclosed (a private key 1.0; an SSN or card number that passed
its checks 0.9; a phone number, which also matches many harmless numbers, 0.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import re2  # type: ignore[import-untyped]

Validator = Callable[[bytes], int]
"""Takes an entity's bytes, returns how many leading bytes of it are the entity (0:
not one). A validator may shorten a greedy match (a card number followed by more digits
in a separate group)."""


@dataclass(frozen=True)
class Detector:
    """One kind of sensitive data.

    `name` is recorded in audit lines; `type` is what redaction writes
    (`[REDACTED:<type>]`); `weight` in (0, 1] feeds the score; `pattern` is RE2 syntax
    over bytes with group 1 the entity; `max_span` bounds the entity's length in bytes
    (longer entities are dropped, so the bound holds); `until`, when set, extends a
    match to that terminator pattern (consumed when `consume_until`); `source` names
    where the rule comes from.
    """

    name: str
    type: str
    weight: float
    pattern: bytes
    max_span: int
    source: str
    validate: Validator | None = None
    until: bytes | None = None
    consume_until: bool = False
    until_max_span: int = 1


@dataclass(frozen=True)
class Match:
    """One entity found: bytes [start, end) of the scanned text."""

    detector: Detector
    start: int
    end: int


# ---- validators ----

def _digits(entity: bytes) -> bytes:
    return bytes(c for c in entity if 0x30 <= c <= 0x39)


def luhn_ok(digits: bytes) -> bool:
    """True when the decimal string `digits` passes the Luhn check (ISO/IEC 7812-1,
    Annex B): from the right, double every second digit, subtract 9 from results over 9;
    the sum is a multiple of 10."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = char - 0x30
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def validate_card(entity: bytes) -> int:
    """Length of the longest prefix of `entity` (digits, optionally grouped by spaces or
    dashes, ending at a group end) that is a payment card number: 13 to 19 digits
    (ISO/IEC 7812-1 PAN length), major industry identifier 2-6 (banking and financial,
    ISO/IEC 7812-1 section 4.2; 1 is airlines, 7-9 are not cards), Luhn-valid; a run
    with 13 or more digits equal to its first (4444 4444 ..., a filler) is none. 0 when
    none is."""
    digits = _digits(entity)
    if digits[:1] not in (b"2", b"3", b"4", b"5", b"6") or digits.count(digits[:1]) >= 13:
        return 0  # the first digit is every prefix's; 13 equal leading digits: a filler
    ends = [i for i in range(1, len(entity) + 1)
            if i == len(entity) or entity[i] in b" -"]
    for end in reversed(ends):
        digits = _digits(entity[:end])
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            return end
    return 0


def validate_ssn(entity: bytes) -> int:
    """`entity` (AAA-GG-SSSS or AAA GG SSSS) is a US Social Security number unless its
    area is 000, 666 or 900-999, its group 00 or its serial 0000: numbers the SSA never
    issues (SSA, "Social Security Number Randomization", 2011, and POMS RM 10201.035).
    Returns len(entity) or 0."""
    digits = _digits(entity)
    if len(digits) != 9:
        return 0
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in (b"000", b"666") or area[:1] == b"9" or group == b"00" or serial == b"0000":
        return 0
    return len(entity)


def validate_phone(entity: bytes) -> int:
    """A phone number has 7 to 15 digits (ITU-T E.164: at most 15 including the country
    code; national numbers of 7 and more). Returns len(entity) or 0."""
    return len(entity) if 7 <= len(_digits(entity)) <= 15 else 0


_IBAN_REGISTRY = (
    "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 "
    "CY:28 CZ:24 DE:22 DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 "
    "GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 "
    "KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 ME:22 MK:19 MR:27 MT:31 "
    "MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 SE:24 "
    "SI:19 SK:24 SM:27 ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20 "
)
IBAN_LENGTHS: Final[Mapping[bytes, int]] = {
    country.encode(): int(length)
    for country, length in (item.split(":") for item in _IBAN_REGISTRY.split())}
"""IBAN length per country (SWIFT IBAN Registry, the ISO 13616 registration authority)."""


def iban_ok(compact: bytes) -> bool:
    """True when `compact` (an IBAN without spaces, upper case) passes the ISO 13616-1
    check: the first four characters moved to the end, letters as 10..35, the number
    mod 97 is 1 (ISO/IEC 7064 MOD 97-10)."""
    moved = compact[4:] + compact[:4]
    number = 0
    for char in moved:
        value = char - 0x30 if char <= 0x39 else char - 0x41 + 10
        number = (number * (100 if value > 9 else 10) + value) % 97
    return number == 1


def validate_iban(entity: bytes) -> int:
    """The prefix of `entity` that is an IBAN: as long as its country's IBAN
    (`IBAN_LENGTHS`) and mod-97 valid (`iban_ok`); spaces between groups allowed.
    Returns its length in bytes, or 0."""
    length = IBAN_LENGTHS.get(entity[:2])
    if length is None:
        return 0
    seen = 0
    for index, char in enumerate(entity):
        if char != 0x20:
            seen += 1
            if seen == length:
                end = index + 1
                if end < len(entity) and entity[end] != 0x20:
                    return 0  # the IBAN would end inside a group
                return end if iban_ok(entity[:end].replace(b" ", b"")) else 0
    return 0


def validate_email(entity: bytes) -> int:
    """An address has a local part of 1-64 octets without a leading, trailing or double
    dot (RFC 5321 section 4.5.3.1.1; RFC 5322 dot-atom), is at most 254 octets (RFC 5321
    path limit less the brackets, RFC 3696 errata 1690), and domain labels neither start
    nor end with a hyphen (RFC 1035 section 2.3.1). Returns len(entity) or 0."""
    local, _, domain = entity.partition(b"@")
    if len(entity) > 254 or not 1 <= len(local) <= 64:
        return 0
    if local.startswith(b".") or local.endswith(b".") or b".." in local:
        return 0
    if any(label.startswith(b"-") or label.endswith(b"-") for label in domain.split(b".")):
        return 0
    return len(entity)


# ---- the detectors ----

_TOKEN_RUN = rb"[^A-Za-z0-9_\-]"
_JWT_RUN = rb"[^A-Za-z0-9_\-.]"

DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(
        name="pem_private_key", type="PRIVATE_KEY", weight=1.0,
        pattern=rb"(?:[^\-])(-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----)",
        max_span=64, until=rb"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY-----",
        consume_until=True, until_max_span=64,
        source="RFC 7468 (PEM labels PRIVATE KEY, ENCRYPTED PRIVATE KEY) and the "
               "RSA/EC/DSA/OPENSSH PRIVATE KEY labels of OpenSSL and OpenSSH"),
    Detector(
        name="us_ssn", type="US_SSN", weight=0.9,
        pattern=rb"(?:[^0-9A-Za-z\-])(\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4})\b",
        max_span=11, validate=validate_ssn,
        source="SSA: SSN randomization (2011); never issued: area 000, 666, 900-999, "
               "group 00, serial 0000"),
    Detector(
        name="credit_card", type="CREDIT_CARD", weight=0.9,
        pattern=rb"(?:[^0-9A-Za-z\-])(\d(?:[ \-]?\d){12,18})\b",
        max_span=37, validate=validate_card,
        source="ISO/IEC 7812-1: 13-19 digit PAN, MII 2-6, Luhn check digit (Annex B)"),
    Detector(
        name="iban", type="IBAN_CODE", weight=0.7,
        pattern=rb"(?:[^0-9A-Za-z])([A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30})\b",
        max_span=42, validate=validate_iban,
        source="ISO 13616-1 (structure, mod-97 check) and the SWIFT IBAN Registry "
               "(length per country)"),
    Detector(
        name="api_key", type="API_KEY", weight=0.9,
        pattern=(rb"(?:[^A-Za-z0-9_\-])("
                 rb"(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key id
                 rb"|gh[pousr]_[A-Za-z0-9]{36}"  # GitHub classic tokens
                 rb"|github_pat_[A-Za-z0-9_]{22}"  # GitHub fine-grained PAT (prefix)
                 rb"|glpat-[A-Za-z0-9_\-]{20}"  # GitLab personal access token
                 rb"|xox[abposr]-[A-Za-z0-9\-]{10}"  # Slack tokens (prefix)
                 rb"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24}"  # Stripe secret keys (prefix)
                 rb"|sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20}"  # OpenAI, Anthropic
                 rb"|AIza[0-9A-Za-z_\-]{35}"  # Google API key
                 rb")"),
        max_span=48, until=_TOKEN_RUN,
        source="vendors' documented token formats: AWS IAM identifiers (AKIA/ASIA), "
               "GitHub token formats (2021), GitLab token prefixes, Slack token types, "
               "Stripe API keys, OpenAI and Anthropic API keys, Google API keys (AIza)"),
    Detector(
        name="jwt", type="API_KEY", weight=0.8,
        pattern=rb"(?:[^A-Za-z0-9_\-.])(eyJ[A-Za-z0-9_\-]{10,200}\.eyJ[A-Za-z0-9_\-]{4})",
        max_span=218, until=_JWT_RUN,
        source="RFC 7519 JWS compact serialization: base64url JSON header ({\" -> eyJ), "
               "payload and signature joined by dots"),
    Detector(
        name="email", type="EMAIL_ADDRESS", weight=0.4,
        pattern=(rb"(?:[^A-Za-z0-9._%+\-])([A-Za-z0-9._%+\-]{1,64}@"
                 rb"(?:[A-Za-z0-9\-]{1,63}\.){1,4}[A-Za-z]{2,24})\b"),
        max_span=64 + 1 + 4 * 64 + 24, validate=validate_email,
        source="RFC 5321 4.5.3.1 (lengths), RFC 5322 3.4.1 (addr-spec, common atext), "
               "RFC 1035 2.3.1 (labels)"),
    Detector(
        name="phone", type="PHONE_NUMBER", weight=0.3,
        pattern=(rb"(?:[^0-9A-Za-z+\-])("
                 # E.164 with the +: country code 1-3 digits, groups of 1-4
                 rb"\+[1-9]\d{0,2}(?:[ .\-]?\(?\d{1,4}\)?){1,5}(?:[ .\-]?\d{1,4})"
                 # NANP: (NXX) NXX-XXXX, NXX-NXX-XXXX, +1 optional
                 rb"|(?:1[ .\-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .\-])[2-9]\d{2}[ .\-]\d{4}"
                 # national forms with a trunk prefix 0: 0AA BBB CCCC, 06 12 34 56 78
                 rb"|0[1-9]\d{0,3}(?:[ .\-]\d{2,4}){2,4}"
                 rb")\b"),
        max_span=40, validate=validate_phone,
        source="ITU-T E.164 (at most 15 digits, + and country code), NANPA numbering "
               "plan (NXX area and exchange codes, N = 2-9), national trunk prefix 0 "
               "(ITU-T E.164 Annex; e.g. Ofcom, ARCEP numbering plans)"),
)
"""Every detector the gateway runs, in priority order (first wins a tie)."""

WINDOW: Final = max(d.max_span for d in DETECTORS) + 2
"""Bytes a stream holds back: the longest entity plus its two context bytes. A match
that starts more than this before the end of what arrived cannot change with more
text."""


def placeholder(detector: Detector) -> bytes:
    """What redaction writes for a match of `detector`: `[REDACTED:<type>]`."""
    return b"[REDACTED:" + detector.type.encode() + b"]"


class Scanner:
    """The compiled detectors (compile once, share: scanning keeps no state)."""

    def __init__(self, detectors: Iterable[Detector] = DETECTORS) -> None:
        """Compile `detectors` with RE2.

        Raises:
            re2.error: a pattern RE2 does not accept (lookaround, backreferences).
        """
        self.detectors = tuple(detectors)
        options = re2.Options()
        options.max_mem = 64 << 20
        self._patterns = [re2.compile(d.pattern, options) for d in self.detectors]
        self._until = [re2.compile(d.until, options) if d.until else None
                       for d in self.detectors]
        self._priority = {d.name: i for i, d in enumerate(self.detectors)}
        self._set = re2.Set.SearchSet(options)
        for detector in self.detectors:
            self._set.Add(detector.pattern)
        self._set.Compile()
        self.window = max(d.max_span for d in self.detectors) + 2

    def find(self, text: bytes, start: int = 0) -> list[Match]:
        """The non-overlapping, unextended matches in `text` whose entity starts at or
        after `start`, by start. `text[start - 1]` (when start > 0) is read as context.
        Where two matches overlap, the earlier wins, then the longer, then the detector
        listed first. O(len(text)) per detector."""
        found: list[Match] = []
        view = text if start > 0 else b"\n" + text
        shift = 0 if start > 0 else 1
        begin = start - 1 if start > 0 else 0
        hits = self._set.Match(view[begin:]) if begin else self._set.Match(view)
        for index in hits or ():
            detector = self.detectors[index]
            for match in self._patterns[index].finditer(view, begin):
                entity_start, entity_end = match.span(1)
                if entity_start - shift < start:
                    continue
                entity = view[entity_start:entity_end]
                length = detector.validate(entity) if detector.validate else len(entity)
                if 0 < length <= detector.max_span:
                    found.append(Match(detector, entity_start - shift,
                                       entity_start - shift + length))
        found.sort(key=lambda m: (m.start, m.start - m.end,
                                  self._priority[m.detector.name]))
        kept: list[Match] = []
        for match in found:
            if not kept or match.start >= kept[-1].end:
                kept.append(match)
        return kept

    def terminator(self, detector: Detector, text: bytes, start: int) -> tuple[int, int] | None:
        """Where `detector`'s `until` pattern first matches in `text` from `start`
        ((start, end) in bytes), or None."""
        pattern = self._until[self._priority[detector.name]]
        if pattern is None:
            return None
        match = pattern.search(text, start)
        return None if match is None else (match.start(), match.end())

    def extend(self, match: Match, text: bytes) -> Match:
        """`match` extended to its detector's terminator (module docstring), or to the
        end of `text` when none follows."""
        detector = match.detector
        if detector.until is None:
            return match
        found = self.terminator(detector, text, match.end)
        if found is None:
            return Match(detector, match.start, len(text))
        return Match(detector, match.start, found[1] if detector.consume_until else found[0])

    def scan(self, text: bytes) -> list[Match]:
        """All matches in `text`, extended (`extend`), non-overlapping, by start.
        Linear in len(text): each extension search starts where the last ended."""
        out: list[Match] = []
        for match in self.find(text):
            if out and match.start < out[-1].end:
                continue
            out.append(self.extend(match, text))
        return out


def counts(matches: Iterable[Match]) -> dict[str, int]:
    """Matches per detector name."""
    result: dict[str, int] = {}
    for match in matches:
        result[match.detector.name] = result.get(match.detector.name, 0) + 1
    return result


def score(found: Mapping[str, int], detectors: Iterable[Detector] = DETECTORS) -> float:
    """The sensitivity of a text whose matches per detector name are `found` (module
    docstring formula), rounded to 4 decimals, in [0, 1].

    Raises:
        KeyError: a name that is no detector's.
    """
    weights = {d.name: d.weight for d in detectors}
    log_clean = 0.0
    for name, count in found.items():
        weight = weights[name]
        if count <= 0:
            continue
        if weight >= 1.0:
            return 1.0
        log_clean += count * math.log1p(-weight)
    return round(1.0 - math.exp(log_clean), 4)


def redact(text: bytes, matches: Iterable[Match]) -> bytes:
    """`text` with each of `matches` (non-overlapping, by start) replaced by its
    placeholder."""
    parts: list[bytes] = []
    at = 0
    for match in matches:
        parts.append(text[at:match.start])
        parts.append(placeholder(match.detector))
        at = match.end
    parts.append(text[at:])
    return b"".join(parts)
