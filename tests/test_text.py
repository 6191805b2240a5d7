"""Question extraction and language identification in all five languages."""

from __future__ import annotations

import pytest

from models.lang import LanguageDetector
from models.text import normalize
from service.questions import extract_questions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Kiedy wyślecie moje zamówienie? Czekam już dwa tygodnie!", ["Kiedy wyślecie moje zamówienie?"]),
        ("Kiedy wyślecie i czy mogę zapłacić kartą?", ["Kiedy wyślecie", "czy mogę zapłacić kartą?"]),
        ("czy jest w rozmiarze M", ["czy jest w rozmiarze M"]),
        ("Когда будет доставка и можно ли оплатить картой", ["Когда будет доставка", "можно ли оплатить картой"]),
        ("Есть ли доставка в Казань? Сколько стоит", ["Есть ли доставка в Казань?", "Сколько стоит"]),
        ("Чи є знижки, коли буде розпродаж", ["Чи є знижки", "коли буде розпродаж"]),
        (
            "Hallo, wann kommt die Lieferung und ob ich mit PayPal zahlen kann?",
            ["wann kommt die Lieferung", "ob ich mit PayPal zahlen kann?"],
        ),
        ("Hi, do you ship to Poland? Also, how much is shipping?", ["do you ship to Poland?", "how much is shipping?"]),
        ("Love it! Best jacket ever.", []),
        ("How great is this!", []),
        ("Jak można tak traktować klientów?! Skandal.", []),  # "?!" is rhetorical
        ("What a joke. Where is my parcel", ["Where is my parcel"]),
    ],
)
def test_questions_in_order(text, expected):
    assert extract_questions(text) == expected
    assert all(q in text for q in expected)


def test_questions_on_the_seed_set(seed_rows):
    """Each labelled question found (as a span overlapping the labelled one) and few extra ones."""
    found = missed = extra = 0
    for row in seed_rows:
        got = [q.rstrip("?").strip().lower() for q in extract_questions(row["text"])]
        want = [q.rstrip("?").strip().lower() for q in row["questions"]]
        matched = [w for w in want if any(w in g or g in w for g in got)]
        found += len(matched)
        missed += len(want) - len(matched)
        extra += sum(1 for g in got if not any(w in g or g in w for w in want))
    recall = found / (found + missed)
    precision = found / (found + extra)
    assert recall >= 0.9 and precision >= 0.85, (recall, precision)


@pytest.fixture(scope="module")
def detector():
    return LanguageDetector()


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Gdzie jest moja paczka?", "pl"),
        ("dziekuje bardzo, super obsluga", "pl"),
        ("Где мой заказ?", "ru"),
        ("Когда доставка?", "ru"),
        ("Де моє замовлення?", "uk"),
        ("Коли доставка?", "uk"),
        ("Дякую!", "uk"),
        ("Where is my order?", "en"),
        ("Wo ist meine Bestellung?", "de"),
        ("Vielen Dank, alles super", "de"),
    ],
)
def test_language_of_short_comments(detector, text, lang):
    assert detector.detect(text) == lang


def test_language_on_the_seed_set(detector, seed_rows):
    correct = sum(detector.detect(r["text"]) == r["lang"] for r in seed_rows)
    assert correct / len(seed_rows) >= 0.95
    assert detector.detect("👍👍 123") == "und"


def test_normalize_masks_urls_and_handles_and_decodes_entities():
    assert normalize("@FC_Help it&#39;s broken https://x.co/a |LBR| thx") == "@USER it's broken URL \n thx"
