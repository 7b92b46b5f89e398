"""The detectors (gateway/detect.py) and stream redaction (gateway/stream_redact.py): a
corpus of true positives and near misses, unicode and long inputs, split streams, and
linear work on hostile input (counted, not timed)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
import re2  # type: ignore[import-untyped]

from deepseek_operator.gateway.detect import (
    DETECTORS,
    Detector,
    Scanner,
    counts,
    iban_ok,
    luhn_ok,
    redact,
    score,
)
from deepseek_operator.gateway.stream_redact import StreamRedactor

SCANNER = Scanner()
GHP = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq98pq+\nq9vKfH3w==\n"
       "-----END RSA PRIVATE KEY-----")

# (text, the one detector that must fire on it)
TRUE_POSITIVES = [
    ("jane.doe@example.com", "email"),
    ("a+tag@mail.sub.example.org", "email"),
    ("078-05-1120", "us_ssn"),
    ("219 09 9999", "us_ssn"),
    ("4111 1111 1111 1111", "credit_card"),
    ("4111-1111-1111-1111", "credit_card"),
    ("5555555555554444", "credit_card"),
    ("378282246310005", "credit_card"),
    ("6011 1111 1111 1117", "credit_card"),
    ("+44 20 7946 0958", "phone"),
    ("+1 212 555 1234", "phone"),
    ("(212) 555-1234", "phone"),
    ("212-555-1234", "phone"),
    ("06 12 34 56 78", "phone"),
    ("+33 6 12 34 56 78", "phone"),
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("GB82 WEST 1234 5698 7654 32", "iban"),
    ("NL91ABNA0417164300", "iban"),
    ("AKIAIOSFODNN7EXAMPLE", "api_key"),
    (GHP, "api_key"),
    ("sk-proj-" + "x" * 40, "api_key"),
    ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "api_key"),
    ("xoxb-1234567890-abcdefghij", "api_key"),
    ("AIza" + "SyD" + "x" * 32, "api_key"),
    (JWT, "jwt"),
    (PEM, "pem_private_key"),
]

NEAR_MISSES = [
    "4111 1111 1111 1112",  # Luhn fails
    "4111111111111",  # 13 digits, Luhn fails
    "1234 5678 9012 3456",  # Luhn fails
    "7111 1111 1111 1114",  # Luhn ok but MII 7: not a payment card
    "4444 4444 4444 4448",  # a filler run
    "000-12-3456", "666-12-3456", "900-12-3456", "987-65-4321",  # areas never issued
    "123-00-4567", "123-45-0000",  # group 00, serial 0000
    "123-45-67890", "1123-45-6789",  # part of a longer number
    "jane@localhost", "jane..doe@example.com", ".jane@example.com", "jane.@example.com",
    "jane@-example.com", "jane@example.c", "@example.com", "jane@", "user at example.com",
    "a" * 65 + "@example.com",  # local part over 64
    "2026-11-30", "12:30:45", "version 1.2.3.4", "+1 23", "call 555-1234",
    "AKIA1234", "ghp_short", "sk-short", "eyJhbGciOi",
    "-----BEGIN PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----",
]


def names(text: str) -> dict[str, int]:
    return counts(SCANNER.scan(text.encode()))


@pytest.mark.parametrize(("text", "name"), TRUE_POSITIVES)
def test_true_positives_fire_alone_and_in_a_sentence(text: str, name: str) -> None:
    assert names(text) == {name: 1}
    sentence = f"Here: {text}, thanks.\n"
    matches = SCANNER.scan(sentence.encode())
    assert counts(matches) == {name: 1}
    detector = matches[0].detector
    redacted = redact(sentence.encode(), matches).decode()
    assert redacted == f"Here: [REDACTED:{detector.type}], thanks.\n" or (
        detector.until is not None and redacted.startswith(f"Here: [REDACTED:{detector.type}]"))
    assert text not in redacted


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_do_not_fire(text: str) -> None:
    assert names(text) == {}
    assert names(f"see {text} here") == {}


@pytest.mark.parametrize("text", ["DE89 3704 0044 0532 0130 01",  # mod-97 fails
                                  "XX89 3704 0044 0532 0130 00",  # no such country
                                  "DE89 3704 0044 0532 0130",  # too short for DE
                                  ])
def test_iban_near_misses_are_no_iban(text: str) -> None:
    # Their digit groups may still read as a card or phone number (their own rules).
    assert "iban" not in names(text)


def test_the_validators_follow_their_standards() -> None:
    assert luhn_ok(b"79927398713") and not luhn_ok(b"79927398710")  # ISO/IEC 7812 example
    assert iban_ok(b"GB82WEST12345698765432") and not iban_ok(b"GB82WEST12345698765433")


def test_a_card_followed_by_another_number_is_cut_at_its_last_group() -> None:
    matches = SCANNER.scan(b"card 4111 1111 1111 1111 20 units")
    assert counts(matches) == {"credit_card": 1}
    assert redact(b"card 4111 1111 1111 1111 20 units", matches) == (
        b"card [REDACTED:CREDIT_CARD] 20 units")


def test_tokens_extend_to_their_end_and_key_blocks_to_their_end_line() -> None:
    long_key = "sk-proj-" + "Ab9_-" * 60
    assert redact(f"k={long_key};x".encode(), SCANNER.scan(f"k={long_key};x".encode())) == (
        b"k=[REDACTED:API_KEY];x")
    text = f"before\n{PEM}\nafter".encode()
    assert redact(text, SCANNER.scan(text)) == b"before\n[REDACTED:PRIVATE_KEY]\nafter"
    cut = f"before\n{PEM[:60]}".encode()  # no END line: everything after BEGIN goes
    assert redact(cut, SCANNER.scan(cut)) == b"before\n[REDACTED:PRIVATE_KEY]"


def test_unicode_around_matches_and_non_ascii_digits() -> None:
    text = "Ünïcødé 📧 jane.doe@example.com — 電話 +81 3-1234-5678 終".encode()
    matches = SCANNER.scan(text)
    assert counts(matches) == {"email": 1, "phone": 1}
    assert redact(text, matches).decode() == (
        "Ünïcødé 📧 [REDACTED:EMAIL_ADDRESS] — 電話 [REDACTED:PHONE_NUMBER] 終")
    # Fullwidth digits are not ASCII digits to RE2: a documented limit.
    fullwidth = "4111 1111 1111 1111".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    assert names(fullwidth) == {}
    # An address with a non-ASCII local part is not matched whole (ASCII atext only).
    assert "email" not in names("jösé@exämple.com")


def test_very_long_input_finds_every_planted_match() -> None:
    filler = "lorem ipsum dolor sit amet 42 " * 40_000  # 1.2 MB
    text = f"078-05-1120 {filler} jane@example.com {filler} 4111111111111111".encode()
    assert counts(SCANNER.scan(text)) == {"us_ssn": 1, "email": 1, "credit_card": 1}


def test_the_score_is_the_documented_noisy_or() -> None:
    assert score({}) == 0.0
    assert score({"email": 1}) == 0.4
    assert score({"email": 2}) == round(1 - 0.6 ** 2, 4)
    assert score({"us_ssn": 1, "phone": 1}) == round(1 - 0.1 * 0.7, 4)
    assert score({"pem_private_key": 1, "email": 3}) == 1.0
    assert all(0 < d.weight <= 1 for d in DETECTORS)
    with pytest.raises(KeyError):
        score({"nope": 1})


def test_every_entity_fits_its_window() -> None:
    longest = {
        "email": "a" * 64 + "@" + ".".join(["b" * 63] * 4) + "." + "c" * 24,
        "credit_card": " ".join(["4111"] * 4) + " 111",
        "iban": "LC55 HEMM 0001 0001 0012 0012 0002 3015",
        "jwt": "eyJ" + "a" * 200 + ".eyJ" + "bcde",
    }
    for detector in DETECTORS:
        assert detector.max_span + 2 <= SCANNER.window
    for name, text in longest.items():
        found = SCANNER.find(text.encode())
        assert all(m.end - m.start <= m.detector.max_span for m in found), name


CORPUS = " ".join(f"{text} and" for text, _ in TRUE_POSITIVES) + " " + " ; ".join(NEAR_MISSES)


@pytest.mark.parametrize("seed", range(20))
def test_a_stream_in_random_pieces_is_redacted_as_the_whole_text(seed: int) -> None:
    text = ("Ünïcødé 🙂 " + CORPUS).encode()
    expected = redact(text, SCANNER.scan(text))
    pieces = random.Random(seed)
    redactor = StreamRedactor(SCANNER, stride=1 if seed % 2 else 64)
    out, at = [], 0
    while at < len(text):
        size = pieces.randint(1, 40)
        out.append(redactor.feed(text[at:at + size]))
        at += size
    out.append(redactor.close())
    assert b"".join(out) == expected
    for piece in out:
        piece.decode()  # every piece is whole UTF-8 characters
    assert redactor.counts == counts(SCANNER.scan(text))


@pytest.mark.parametrize(("text", "name"), TRUE_POSITIVES)
def test_a_match_split_in_two_at_any_point_is_redacted(text: str, name: str) -> None:
    data = f"x {text} y".encode()
    expected = redact(data, SCANNER.scan(data))
    for split in range(1, len(data)):
        redactor = StreamRedactor(SCANNER, stride=1)
        got = redactor.feed(data[:split]) + redactor.feed(data[split:]) + redactor.close()
        assert got == expected, split
        assert redactor.counts == {name: 1}


@pytest.mark.parametrize("stride", [1, 64])
def test_a_stream_holds_back_at_most_one_detector_window(stride: int) -> None:
    redactor = StreamRedactor(SCANNER, stride=stride)
    assert redactor.holdback == SCANNER.window + stride
    sent = received = 0
    for _ in range(2000):
        piece = b"plain words, 078-05-1120 here. "
        received += len(piece)
        sent += len(redactor.feed(piece))
        assert received - sent <= redactor.holdback
    assert redactor.close() and redactor.counts == {"us_ssn": 2000}


def test_a_lazy_redactor_counts_the_same() -> None:
    text = CORPUS.encode() * 3
    lazy = StreamRedactor(SCANNER, lazy=True)
    for at in range(0, len(text), 7):
        lazy.feed(text[at:at + 7])
    lazy.close()
    assert lazy.counts == counts(SCANNER.scan(text))


# ---- linear time, structurally: an automaton engine, and validator work counted ----


def test_patterns_are_compiled_by_re2_which_has_no_backtracking_constructs() -> None:
    for compiled in SCANNER._patterns:
        assert isinstance(compiled, re2._Regexp)
    with pytest.raises(re2.error):
        re2.compile(rb"(a+)\1")  # backreferences: what makes backtracking necessary
    with pytest.raises(re2.error):
        re2.compile(rb"(?<=a)b")  # lookbehind


HOSTILE = {
    "word run": b"a" * 1_000_000,
    "digit run": b"1" * 1_000_000,
    "spaced digits": b"1 " * 500_000,
    "dashed digits": b"4-" * 500_000,
    "local parts": (b"a." * 32 + b"@") * 15_000,
    "at signs": b"a@" * 500_000,
    "domains": b"a@" + b"b." * 500_000,
    "dashes": b"-" * 1_000_000,
    "jwt heads": b"eyJ" * 333_333,
    "begin lines": b"-----BEGIN PRIVATE KEY-----" * 37_000,
    "plus signs": b"+1 " * 333_333,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_megabyte_costs_linear_validator_work(name: str) -> None:
    """RE2 matches in linear time; what remains is the validators' work: each runs on one
    match, matches of a detector do not overlap and are at most max_span long, so the
    bytes validated are at most len(text) per detector."""
    text = HOSTILE[name]
    validated: dict[str, int] = {}

    def counting(detector: Detector) -> Detector:
        inner = detector.validate

        def validate(entity: bytes) -> int:
            validated[detector.name] = validated.get(detector.name, 0) + len(entity)
            return inner(entity) if inner else len(entity)

        return dataclasses.replace(detector, validate=validate)

    scanner = Scanner(counting(d) for d in DETECTORS)
    matches = scanner.scan(text)
    for detector in DETECTORS:
        assert validated.get(detector.name, 0) <= len(text) + 1
    assert sum(m.end - m.start for m in matches) <= len(text)


def test_a_detector_pattern_must_have_an_entity_group() -> None:
    broken: Any = dataclasses.replace(DETECTORS[0], pattern=rb"(((")
    with pytest.raises(re2.error):
        Scanner([broken])
