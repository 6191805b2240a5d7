"""Question extraction and language identification in all five languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.lang import LanguageDetector
from models.text import normalize
from service.questions import extract_questions, is_rhetorical
from tests.conftest import SEED, assert_spans_in_order, read_jsonl

IN_ORDER = [
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
    # a dash or colon announces the questions; "how to" + infinitive; emoji end a sentence; swearing; either-or tags
    ("Mam pytanie – kiedy przyjdzie karta i czy jest płatna", ["kiedy przyjdzie karta", "czy jest płatna"]),
    ("Quick question: how do I reset my PIN", ["how do I reset my PIN"]),
    ("Как подключить роуминг в Турции", ["Как подключить роуминг в Турции"]),
    ("Jak zwrócić buty kupione online", ["Jak zwrócić buty kupione online"]),
    ("Як змінити тариф у застосунку", ["Як змінити тариф у застосунку"]),
    ("Ab wann gilt der neue Tarif", ["Ab wann gilt der neue Tarif"]),
    ("Есть в наличии❓", ["Есть в наличии❓"]),
    ("Where the hell is my order", ["Where the hell is my order"]),
    ("Ця сукня з бавовни чи ні", ["Ця сукня з бавовни чи ні"]),
    ("Halo, dlaczego nie mogę się zalogować", ["dlaczego nie mogę się zalogować"]),
    ("Jak zawsze trzeba czekać.", []),
    ("Как часть акции, мы дарим подарки.", []),
    ("Love it 😍 best shop ever", []),
    # rhetorical idioms are dropped, the genuine question beside them stays
    ("Serio? Dwa tygodnie czekam. Kiedy oddacie pieniądze?", ["Kiedy oddacie pieniądze?"]),
    ("Вы там что, все уснули? Где мой заказ?", ["Где мой заказ?"]),
    ("Ви що там, знущаєтесь? Коли повернете гроші?", ["Коли повернете гроші?"]),
    ("Are you kidding me? Where the hell is my refund?", ["Where the hell is my refund?"]),
    ("Geht's noch? Wo ist meine Bestellung?", ["Wo ist meine Bestellung?"]),
    ("ВИ ТАМ ВСІ СЛІПІ ЧИ ЩО???", []),
    ("Ile razy mam jeszcze dzwonić?", []),
    ("Хто так пакує?", []),
    # the same words in genuine questions
    ("How many times can I change my plan per month?", ["How many times can I change my plan per month?"]),
    ("Wie oft muss ich den Filter wechseln?", ["Wie oft muss ich den Filter wechseln?"]),
    ("Чи складно встановити застосунок?", ["Чи складно встановити застосунок?"]),
    ("Вы что посоветуете для сухой кожи?", ["Вы что посоветуете для сухой кожи?"]),
]


def span_counts(rows: list[dict]) -> tuple[int, int, int]:
    """(found, missed, extra): labelled questions matched by an overlapping span, missed, and spans matching none."""
    found = missed = extra = 0
    for row in rows:
        got = [q.rstrip("?").strip().lower() for q in extract_questions(row["text"])]
        want = [q.rstrip("?").strip().lower() for q in row["questions"]]
        matched = [w for w in want if any(w in g or g in w for g in got)]
        found += len(matched)
        missed += len(want) - len(matched)
        extra += sum(1 for g in got if not any(w in g or g in w for w in want))
    return found, missed, extra


MENDED_ON = ("seed.jsonl", "seed_extra.jsonl", "seed_uk_toxicity.jsonl")  # the seed files the rules were mended on


def test_questions_on_the_seed_set():
    """Each labelled question of the seed files the extractor was mended on found (as an overlapping span) and few
    extra ones: development figures (0.978 / 0.917 when the third batch came)."""
    later = ("seed_third.jsonl", "seed_fourth.jsonl")  # written without sight of the rules, each mended on after
    assert sorted(p.name for p in SEED.parent.glob("*.jsonl")) == sorted((*MENDED_ON, *later))
    rows = [row for name in MENDED_ON for row in read_jsonl(SEED.parent / name)]
    assert len(rows) == 1440
    found, missed, extra = span_counts(rows)
    recall = found / (found + missed)
    precision = found / (found + extra)
    assert recall >= 0.97 and precision >= 0.9, (recall, precision)


def test_questions_on_the_third_seed_batch():
    """seed_third.jsonl was written without sight of the extractor, after its rules were final. Unseen, it scored
    recall 0.834 (231 of 277 labelled questions; English 0.745, where questions without "?" open with "what time",
    "has anyone", "I wonder if") and precision 0.852 (40 spans from rhetorical questions and jabs the idioms do not
    know). Eight openings it showed missing were then added (COMMENT_SHAPES), taking it to 0.870 / 0.858 with the
    other seed files, questions_blind.jsonl and the blind sets' extractions unchanged: since then it is development
    data too. A second round (conditions, alternatives without "?", "how often", "whoever ..., that one ...", Latin
    look-alikes in Ukrainian, "where is my ...?!") took it to 0.928 / 0.880 (257 found, 20 missed, 35 extra), and the
    round mended on questions_fresh.jsonl to 0.931 / 0.887 (258 found, 19 missed, 33 extra)."""
    rows = read_jsonl(SEED.parent / "seed_third.jsonl")
    found, missed, extra = span_counts(rows)
    assert found + missed == 277
    assert found / (found + missed) >= 0.93 and found / (found + extra) >= 0.88, (found, missed, extra)


def test_questions_of_the_fourth_seed_batch():
    """seed_fourth.jsonl (session 24) was written without sight of the extractor. Unseen it scored recall 0.924 (208 of
    225 labelled questions; missed: "не подскажете", "just checking whether", "When's ... and will ...", a colon
    before a German verb-first question, "wieviel", and statements worded as questions, "а с айфоном они дружат")
    and precision 0.779 (59 spans, 57 of them on its rhetorical and bait rows, which the question head drops when
    served). The openings it showed missing were added (COMMENT_SHAPES): 215 found, 10 missed, with every other
    seed file and test set no worse."""
    rows = read_jsonl(SEED.parent / "seed_fourth.jsonl")
    found, missed, extra = span_counts([r for r in rows if r["questions"]])
    assert found + missed == 225
    assert found / (found + missed) >= 0.95 and extra <= 2, (found, missed, extra)
    assert span_counts([r for r in rows if not r["questions"]])[2] <= 57


def test_questions_of_the_fourth_blind_set():
    """bench/data/blind_fourth.jsonl (session 24, 30 comments per language by two writers who read only the labelling
    guidelines) was scored once, before the rules were mended on the fourth seed batch and again after: 93 of its 94
    labelled questions found both times, no extra span on its question rows, 10 on its 75 rows without a question
    (rhetorical questions and bait, left to the question head)."""
    rows = read_jsonl(SEED.parents[2] / "bench" / "data" / "blind_fourth.jsonl")
    found, missed, extra = span_counts([r for r in rows if r["questions"]])
    assert (found + missed, extra) == (94, 0) and found >= 93, (found, missed, extra)
    assert span_counts([r for r in rows if not r["questions"]])[2] <= 10


def test_rhetorical_questions_written_blind():
    """200 comments written without sight of the extractor (tests/questions_blind.jsonl, 40 per language): the
    genuine questions are found and none is dropped, and the rhetorical questions and jabs at other users yield
    far fewer spans than the 103 (20-21 per language) of the extractor before it knew rhetorical idioms. Spam bait
    ("Want to earn 500 a day?") has no idiom to catch: its 20 spans are left to the question and spam heads."""
    rows = read_jsonl(Path(__file__).parent / "questions_blind.jsonl")
    assert len(rows) == 200
    genuine = [r for r in rows if r["kind"] in ("genuine", "mixed")]
    found, missed, extra = span_counts([r for r in genuine if r["kind"] == "genuine"])
    assert extra == 0 and found / (found + missed) >= 0.9, (found, missed, extra)
    found, missed, _ = span_counts(genuine)
    assert found / (found + missed) >= 0.9, (found, missed)
    by_lang = {}
    for lang in ("pl", "ru", "uk", "en", "de"):
        by_lang[lang] = span_counts(
            [r for r in rows if r["lang"] == lang and r["kind"] in ("rhetorical", "reply_jab")]
        )[2]
    assert all(n <= 17 for n in by_lang.values()), by_lang
    assert sum(by_lang.values()) <= 80, by_lang


def test_questions_written_later_without_sight_of_the_rules():
    """250 comments (tests/questions_fresh.jsonl, 50 per language: 22 genuine, 8 mixed, 10 rhetorical, 10 without a
    question), written by five writers who saw neither the extractor nor any other data, after its rules had been
    mended on the seed folder. Read unseen: recall 0.812 and precision 0.800 of the questions of its genuine and
    mixed rows (0.837 / 0.805 after the second round mended on seed_third.jsonl); then mended on it too ("anyone know"
    after a filler, "was kostet", "can someone", "or what?" tags, bait offering earnings, ...) and narrowed after a
    review: 0.881 / 0.817 (178 found, 24 missed, 40 extra), 37 spans on its rhetorical and question-free rows (41
    before)."""
    rows = read_jsonl(Path(__file__).parent / "questions_fresh.jsonl")
    assert len(rows) == 250 and {r["lang"] for r in rows} == {"pl", "ru", "uk", "en", "de"}
    for lang in ("pl", "ru", "uk", "en", "de"):
        kinds = [r["kind"] for r in rows if r["lang"] == lang]
        assert {k: kinds.count(k) for k in set(kinds)} == {"genuine": 22, "mixed": 8, "rhetorical": 10, "none": 10}
    for r in rows:
        assert bool(r["questions"]) == (r["kind"] in ("genuine", "mixed")), r["id"]
    assert_spans_in_order(rows)
    found, missed, extra = span_counts([r for r in rows if r["questions"]])
    assert found + missed == 202
    assert found / (found + missed) >= 0.88 and found / (found + extra) >= 0.81, (found, missed, extra)
    assert span_counts([r for r in rows if not r["questions"]])[2] <= 37


def test_no_labelled_question_is_taken_for_rhetorical():
    """Every question labelled genuine, in the seed folder and the blind sets, passes the rhetorical filter."""
    rows = [row for path in sorted(SEED.parent.glob("*.jsonl")) for row in read_jsonl(path)]
    rows += read_jsonl(Path(__file__).parent / "questions_blind.jsonl")
    rows += read_jsonl(Path(__file__).parent / "questions_fresh.jsonl")
    labelled = [q for row in rows for q in row["questions"]]
    assert len(labelled) > 400
    assert [q for q in labelled if is_rhetorical(q)] == []


# Written by a reviewer to break the rhetorical idioms and the recall rules: genuine questions that use the same
# words, and statements that look like questions.
GENUINE_WITH_RANT_WORDS = [
    "Ile można trzymać krem po otwarciu?",
    "Сколько можно хранить крем после вскрытия?",
    "Скільки можна зберігати крем після відкриття?",
    "Habt ihr noch alle Farben auf Lager?",
    "How hard is it to assemble the wardrobe alone?",
    "What am I paying for with the £5 service fee?",
    "Wofür zahle ich die 4,99 Servicegebühr?",
    "За что я плачу 300 рублей в месяц?",
    "Wie oft muss ich anrufen, bis der Techniker kommt?",
    "Ile razy trzeba dzwonić żeby aktywować kartę?",
    "How many times do I have to call before the technician is booked?",
    "Is there a discount code or something?",
    "Можно оплатить при получении или как?",
    "Gibt es das auch in Blau oder wie?",
    "Кто так упаковывает — ваш склад или курьер?",
    "Хто так пакує, ваш склад чи Нова пошта?",
    "Do you even test on sensitive skin?",
    "Вы что, закрываетесь?",
    "Are you serious about the 50% discount, is it for all products?",
    "Schlaft ihr am Wochenende oder ist der Support erreichbar?",
    "Czy jest 🔥 w rozmiarze M",
    "Это правда?",  # "правда?" alone is rhetorical; ending a question it is not
    "Is this giveaway for real?",
    "Gdzie jest moja paczka 📦 numer 123",
]
STATEMENTS = [
    "U was dostawa 20 zł – gdzie indziej 15 zł.",
    "Мой совет — когда придёт посылка, сразу проверяйте.",
    "Info: wann die Lieferung kommt, steht in der App.",
    "Note – why this happened is still unclear to me.",
    "Polecam ✅ gdzie indziej drożej",
    "Как ни крути, а доставка долгая",
    "Как сказать, вроде норм",
    "Як не крути, доставка довга",
    "Jak widać, nikt nie odpowiada",
    "Не знаю, брать или нет",
    "Wszystko jedno czy tak czy nie",
]


# How comments really open and punctuate questions: after an emoji instead of a full stop, after an @handle, after
# "I was wondering" without "?", as the last clause after a comma, or announced ("Two things: ...").
COMMENT_SHAPES = [
    # openings the third seed batch showed missing (session 21): no "?", yet only a question opens so
    ("what time does the Kraków shop open on saturdays", ["what time does the Kraków shop open on saturdays"]),
    ("what's the difference between the two chargers", ["what's the difference between the two chargers"]),
    ("where the f*** is my parcel, ordered 3 weeks ago", ["where the f*** is my parcel"]),
    (
        "has anybody managed to get a refund for a cancelled booking",
        ["has anybody managed to get a refund for a cancelled booking"],
    ),
    (
        "I wonder if the charger fits the older model, mine is from 2019",
        ["I wonder if the charger fits the older model"],
    ),
    ("Würd mich mal interessieren, wann die neue Kollektion kommt", ["wann die neue Kollektion kommt"]),
    ("цікаво коли буде знижка на чайники", ["цікаво коли буде знижка на чайники"]),
    ("Ab welchem Betrag ist der Versand kostenlos", ["Ab welchem Betrag ist der Versand kostenlos"]),
    ("Świetna kurtka 😍 Czy będzie w zieleni?", ["Czy będzie w zieleni?"]),
    ("Супер сервіс 🙏 коли буде нова колекція?", ["коли буде нова колекція?"]),
    ("new drop looks amazing 🔥🔥 do you ship to Norway", ["do you ship to Norway"]),
    ("Bestellung ist da 👍 ob es die Hose auch in 34 gibt", ["ob es die Hose auch in 34 gibt"]),
    ("@anna_k which colour did you order?", ["which colour did you order?"]),
    ("Hi @mark, is the store open on Sunday? 🙏", ["is the store open on Sunday?"]),
    ("@Ирина подскажите, а вам вернули деньги?", ["подскажите, а вам вернули деньги?"]),
    ("Zastanawiam się, czy ten krem jest dla cery naczynkowej", ["czy ten krem jest dla cery naczynkowej"]),
    ("Хотел уточнить, придет ли заказ до пятницы", ["придет ли заказ до пятницы"]),
    ("I was wondering whether the lamp comes with a bulb", ["I was wondering whether the lamp comes with a bulb"]),
    ("Ich wollte fragen, ob ihr auch nach Österreich liefert.", ["ob ihr auch nach Österreich liefert"]),
    ("Kupiłam wczoraj buty, czy mogę je jeszcze wymienić na większe", ["czy mogę je jeszcze wymienić na większe"]),
    ("got the parcel today, can i still add a gift card to it", ["can i still add a gift card to it"]),
    (
        "Two things: what's the delivery fee, and do you deliver on Sundays?",
        [
            "what's the delivery fee",
            "do you deliver on Sundays?",
        ],
    ),
    ("Was ist das für eine Gebühr und wer hat sie gebucht?", ["Was ist das für eine Gebühr", "wer hat sie gebucht?"]),
    ("Jak to anulowac i kiedy wroca pieniadze", ["Jak to anulowac", "kiedy wroca pieniadze"]),
    ("Як у застосунку змінити пароль", ["Як у застосунку змінити пароль"]),
    # without "?", a question ends where a reason or a remark follows it; a condition or an alternative goes on
    ("Смак норм чи ні, бо беру на свято", ["Смак норм чи ні"]),
    ("czy kurtka jest wodoodporna bo jadę w góry", ["czy kurtka jest wodoodporna"]),
    ("когда откроется магазин на Лесной, хочу зайти после работы", ["когда откроется магазин на Лесной"]),
    ("is the gym open on Easter Monday, planning to come by in the morning", ["is the gym open on Easter Monday"]),
    ("чи можна повернути куртку, якщо бірку вже зрізали", ["чи можна повернути куртку, якщо бірку вже зрізали"]),
    ("czy jest w kolorze czarnym, białym albo szarym", ["czy jest w kolorze czarnym, białym albo szarym"]),
    (
        "habt ihr die Sneaker in 42, brauche sie bis Samstag, wann kommt die nächste Lieferung",
        ["habt ihr die Sneaker in 42", "wann kommt die nächste Lieferung"],
    ),
    ("Macie tę bluzę w rozmiarze S, szukam od miesiąca", ["Macie tę bluzę w rozmiarze S"]),
    # ... but a filler, a "that" clause, a concession or a list goes on with the question
    ("wann kommt denn mein Paket", ["wann kommt denn mein Paket"]),
    ("czy to prawda, że zamykacie sklep w Gdańsku", ["czy to prawda, że zamykacie sklep w Gdańsku"]),
    ("можно ли вернуть куртку, даже если бирку уже срезали", ["можно ли вернуть куртку, даже если бирку уже срезали"]),
    ("czy wysyłacie do Niemiec, Austrii i Szwajcarii", ["czy wysyłacie do Niemiec, Austrii i Szwajcarii"]),
    ("do you have it in blue, green, red or black", ["do you have it in blue, green, red or black"]),
    ("czy jest w rozmiarze M\u00a0, mieszkam w Berlinie od roku", ["czy jest w rozmiarze M"]),
    # a greeting or a vocative before a polite lead or a choice does not split the question
    ("Здравствуйте, подскажите, пожалуйста, когда будет доставка", ["подскажите, пожалуйста, когда будет доставка"]),
    ("Ребята, подскажите, когда будет скидка", ["подскажите, когда будет скидка"]),
    ("Dzień dobry, czy to jest bawełna, czy poliester?", ["czy to jest bawełna, czy poliester?"]),
    ("Guten Abend, ob der Kurs online ist, oder vor Ort?", ["ob der Kurs online ist, oder vor Ort?"]),
    (
        "Доброго дня, хотіла б дізнатися, чи є парковка біля залу, чи треба шукати у дворах",
        ["чи є парковка біля залу, чи треба шукати у дворах"],
    ),
    ("Спасибо за быструю доставку! Кстати, а чехлы к нему будут?", ["а чехлы к нему будут?"]),
    # numbered questions: the number is no part of the question
    (
        "Три вопроса: 1) во сколько открывается касса? 2) можно ли с собакой? 3) есть ли парковка?",
        ["во сколько открывается касса?", "можно ли с собакой?", "есть ли парковка?"],
    ),
    (
        "Mam pytania:\n1. Ile kosztuje dostawa?\n2. Czy mogę zapłacić BLIKiem?",
        ["Ile kosztuje dostawa?", "Czy mogę zapłacić BLIKiem?"],
    ),
    ("two things 1) when do you open on sundays 2) do you deliver", ["when do you open on sundays", "do you deliver"]),
    ("Refund was 14.99 last time. Will the 23.40 come back to my card?", ["Will the 23.40 come back to my card?"]),
    (
        "Ist die Lieferung unterwegs und wird das heute noch was?",
        ["Ist die Lieferung unterwegs", "wird das heute noch was?"],
    ),
    (
        "Könnt ihr bitte mal nachschauen, wo mein Paket hängt?",
        ["Könnt ihr bitte mal nachschauen, wo mein Paket hängt?"],
    ),
    # a last clause asks, "?" or not, where its interrogative is followed by a modal, an infinitive or the verb
    ("zamówiłam w poniedziałek, gdzie mogę sprawdzić status", ["gdzie mogę sprawdzić status"]),
    ("оплатил подписку вчера, куда теперь ввести код", ["куда теперь ввести код"]),
    ("ordered on Monday, when will it ship", ["when will it ship"]),
    ("Gestern bestellt, wo kann ich die Sendung verfolgen", ["wo kann ich die Sendung verfolgen"]),
    # a remark, emoji, then a question: the question starts after the emoji
    ("Ta kurtka to sztos 😍🔥 będzie też w rozmiarze XS?", ["będzie też w rozmiarze XS?"]),
    (
        "Взяла вчера крем, кожа в восторге ✨ а сыворотка из этой серии тоже есть?",
        ["а сыворотка из этой серии тоже есть?"],
    ),
    # "Czy A, czy B?" is one choice; "anyone know" asks; a vocative, like a greeting, is no part of the question
    ("Czy mogę odebrać w sklepie, czy tylko kurier?", ["Czy mogę odebrać w sklepie, czy tylko kurier?"]),
    ("Чи це можна прати в машинці, чи тільки руками?", ["Чи це можна прати в машинці, чи тільки руками?"]),
    ("хтось знає коли відкриють новий магазин на Подолі", ["хтось знає коли відкриють новий магазин на Подолі"]),
    ("Ребят, доставка в субботу будет или нет", ["доставка в субботу будет или нет"]),
    ("gibts die Jacke auch in Grün", ["gibts die Jacke auch in Grün"]),
    (
        "Können Sie mir sagen, ob die Filiale am Sonntag offen hat?",
        ["Können Sie mir sagen, ob die Filiale am Sonntag offen hat?"],
    ),
    ("Карту заблокировали, что мне теперь делать", ["что мне теперь делать"]),
    # a capital after an emoji goes on a question that is still open; a polite lead opens the question after it
    ("Gibt es die 👖 Hose auch in 34?", ["Gibt es die 👖 Hose auch in 34?"]),
    ("Can I pay with 💳 Visa?", ["Can I pay with 💳 Visa?"]),
    ("Подскажите, придет ли заказ до пятницы", ["Подскажите, придет ли заказ до пятницы"]),
    # a condition before the question; an alternative with its verb first or one that narrows; "how often"
    (
        "If I switch to the yearly plan now do I lose my current discount",
        ["If I switch to the yearly plan now do I lose my current discount"],
    ),
    ("jeśli zamówię dziś to czy dojdzie przed weekendem", ["jeśli zamówię dziś to czy dojdzie przed weekendem"]),
    ("charger included or do I have to buy it separately", ["charger included or do I have to buy it separately"]),
    ("ten stolik jest na stanie czy tylko na zamówienie", ["ten stolik jest na stanie czy tylko na zamówienie"]),
    ("доставка бесплатная или только от 3000", ["доставка бесплатная или только от 3000"]),
    ("How often do I need to replace the filter", ["How often do I need to replace the filter"]),
    ("Jak często trzeba czyścić ekspres", ["Jak często trzeba czyścić ekspres"]),
    ("Как часто нужно менять фильтр", ["Как часто нужно менять фильтр"]),
    ("Як часто треба міняти фільтр", ["Як часто треба міняти фільтр"]),
    ("Wie lang dauert der Versand nach Wien", ["Wie lang dauert der Versand nach Wien"]),
    ("Do której jest otwarty salon w sobotę", ["Do której jest otwarty salon w sobotę"]),
    ("Какого числа придёт перерасчёт", ["Какого числа придёт перерасчёт"]),
    # "curious" in Polish and Russian leads into the question after it; "what size does" asks after a remark too
    ("Jestem ciekawa, kiedy będzie nowa kolekcja", ["kiedy będzie nowa kolekcja"]),
    ("Интересно, будет ли скидка на зимние шины", ["будет ли скидка на зимние шины"]),
    ("Love the colours 💛 what size does the medium fit", ["what size does the medium fit"]),
    ("has anybody ever returned a sofa through you", ["has anybody ever returned a sofa through you"]),
    # "?!" asks where it asks for what is mine; a question after ", so"; and joined to the next one
    ("Where's my refund?! Two weeks now", ["Where's my refund?!"]),
    ("Gdzie moja paczka?!", ["Gdzie moja paczka?!"]),
    (
        "The lid cracked on day one, so could you send a new one and when would it arrive",
        ["could you send a new one", "when would it arrive"],
    ),
    # "mich würde interessieren", "was kostet", "can someone", "am I", German verb-first after a comma, "anyone know"
    # after a filler, a handle with a dot, "or still"
    ("Mich würde interessieren, ob ihr auch sonntags liefert", ["ob ihr auch sonntags liefert"]),
    ("was kostet der Reifenwechsel und wie lange dauert er", ["was kostet der Reifenwechsel", "wie lange dauert er"]),
    ("The box arrived crushed, can someone check my order", ["can someone check my order"]),
    ("my train got cancelled, am I owed a refund", ["am I owed a refund"]),
    (
        "Drucker getauscht, seitdem druckt er nicht. liegt das am Treiber, muss ich ihn neu installieren",
        ["liegt das am Treiber", "muss ich ihn neu installieren"],
    ),
    ("@anna.k did they refund you in the end", ["did they refund you in the end"]),
    (
        "anyway does anyone know if the gym opens on Easter Monday",
        ["anyway does anyone know if the gym opens on Easter Monday"],
    ),
    ("вам вернули деньги или до сих пор ждёте", ["вам вернули деньги или до сих пор ждёте"]),
    # ... and the same words where they ask
    ("Can't log in since the update, do I reinstall the app or what?", ["do I reinstall the app or what?"]),
    (
        "What's the minimum spend if I want to get free delivery?",
        ["What's the minimum spend if I want to get free delivery?"],
    ),
    ("ordered on monday.still nothing.when will it arrive", ["when will it arrive"]),
    ("Bought it from amazon.de and it broke, can I return it to you", ["can I return it to you"]),
    ("Where the hell is my parcel?!", ["Where the hell is my parcel?!"]),
    ("so how much", ["so how much"]),
    ("Кто заказывал этот диван, тот доволен или нет", ["Кто заказывал этот диван, тот доволен или нет"]),
    ("Wer bezahlt den Rückversand, der Kunde oder ihr", ["Wer bezahlt den Rückversand, der Kunde oder ihr"]),
    ("Jeśli zamówię teraz, to czy zdążycie przed świętami", ["Jeśli zamówię teraz, to czy zdążycie przed świętami"]),
    # a question after "but" in any of the languages
    ("Super buty, ale czy są wodoodporne", ["czy są wodoodporne"]),
    ("Гарна сукня, але чи є вона в розмірі S", ["чи є вона в розмірі S"]),
    ("Nice jacket, but when will the XL be back", ["when will the XL be back"]),
    # Ukrainian typed with a Latin "i": read as Cyrillic, returned as typed
    ("скiльки коштує доставка до Львова", ["скiльки коштує доставка до Львова"]),
    ("чохол пiдходить до старої моделi чи тiльки до нової", ["чохол пiдходить до старої моделi чи тiльки до нової"]),
    # openings the fourth seed batch showed missing (session 24)
    (
        "Не подскажете, до скольки работает пункт выдачи на Гагарина, а то на сайте написано до 20",
        ["Не подскажете, до скольки работает пункт выдачи на Гагарина"],
    ),
    (
        "Подскажите, до скольки работает пункт выдачи, а то на сайте одно, а в картах другое",
        ["Подскажите, до скольки работает пункт выдачи"],  # the reason after a polite lead is cut off too
    ),
    ("Не підкажете, коли відкриється магазин на Подолі", ["Не підкажете, коли відкриється магазин на Подолі"]),
    ("Hi! Just checking whether my results are back yet", ["Just checking whether my results are back yet"]),
    (
        "When's the Black Friday sale starting and will the Pace Pro be in it",
        ["When's the Black Friday sale starting", "will the Pace Pro be in it"],
    ),
    ("they sent me the wrong wine, who do I send it back to", ["who do I send it back to"]),
    ("ab wieviel € ist der versand gratis", ["ab wieviel € ist der versand gratis"]),
    (
        "Drei Fragen zur Fit 3: Ist das Armband austauschbar, kann man damit schwimmen und wann kommt Salbei wieder?",
        ["Ist das Armband austauschbar", "kann man damit schwimmen", "wann kommt Salbei wieder?"],
    ),
]
# A statement, a tag, a doubt or a jab stays no question, however it is punctuated.
COMMENT_NON_QUESTIONS = [
    "I wonder why I even bother.",  # "wonder" and "curious" lead only into if/whether/when/where/which/how much
    "Curious why they even bother",
    "цікаво чому ви такі повільні",
    "What a time to be alive 😂",
    "did anyone ask you lol",  # "has/did anyone" opens a question only before "tried", "bought", "managed", ...
    "is anybody surprised at this point",
    "what time is it even, 3am and still no parcel 🙄",
    "Kupiłam dwie pary, nie wiem, czy zostawię obie",
    "yeah and everyone else is wrong, are they 🙄",
    "Не знаю, придет ли вообще",
    "Ich weiß nicht, ob ich wieder bestelle.",
    "Who wants to win a FREE phone?? Follow and share!",
    "Кому нужна подработка на дому? Пишите в личку",
    "Szukasz pracy zdalnej? Napisz do mnie",
    "A czego się spodziewałaś za 30 zł?",
    "Ist das euer Ernst? 12 Euro Versand",
    # a relative clause with an impersonal modal, or one with its subject first, asks nothing
    "Kupiłam w sklepie na rogu, gdzie można płacić kartą",
    "I complained to the staff, who do the best they can",  # "who do I / we" asks; "who do the ..." is relative
    "Just checking in, love the new menu",
    "Dzień dobry, proszę o informację, kiedy będzie dostępna karma w worku 12 kg",  # a request, as "let me know when"
    "Заказала в пункт выдачи, где можно забрать в любое время",
    "Zadzwonię jeszcze raz, kiedy wrócę z pracy",
    "Ich melde mich wieder, wann ich Zeit habe",
    "Love the new menu 😍 the pasta was amazing",
    # a German review that opens with its verb; a relative "where to buy", "when there are", "when the kids are"
    "Werde ich auf jeden Fall wieder bestellen.",
    "Würde ich jederzeit wieder kaufen",
    "Теперь знаю, где покупать косметику",
    "Заказываю у вас, когда есть скидки",
    "Замовляємо піцу, коли діти вдома",
    "Już wiem, gdzie kupować kosmetyki 😍",
    "Who thought this jingle was a good idea?",
    "Вы серьезно думаете, что кто-то будет столько ждать?",
    "£40 for a seat now. What's next, paying for the toilet?",
    # found by a review: a dropped subject, a plan to find out, someone else asked, nouns and exclamations
    "Bought it last week, was the best decision ever",
    "Tried it yesterday, did the trick",
    "Got it for my mum 🎁 was the best gift ever",
    "Zobaczymy, czy to wytrzyma zimę",
    "Sprawdzę jutro, czy jest w sklepie",
    "Mal sehen, ob die Jacke hält",
    "Я спросила у мамы, придет ли она",
    "Jak zwykle nic nie działa",
    "Jak ojciec tak syn",
    "Як я люблю гуляти в цьому парку 😍",
    "Як завжди все проти нас",
    "Two things: what a mess, and what a joke.",
    # a condition with no question in it, a fixed "or", "whoever ..., that one ...", "?!" about no possession
    "If I were you I would ask for a refund",
    "Sooner or later it breaks anyway",
    "Prędzej czy później każdy się zepsuje",
    "You can pay now or do it later in the app",
    "Returned it in store or did it online, both fine",
    "Кто опоздал, тот не успел",
    "Хто рано встає, тому Бог дає",
    "Kto pierwszy, ten lepszy",
    "Wer das kauft, ist selbst schuld",
    "Gdzie wasz szacunek do klienta?!",
    "Интересно, как вы это объясните",
    "Ciekawa jestem, co na to szef",
    "She loved it, so did I",
    "So do I.",
    "Neither can we.",
    "Wenn es geht, bitte schnell liefern",
    "Zuerst das Geld zurück, dann reden wir",
    "Nie wiem czy wrócę do was",
    "Kupiłam czy raczej dostałam w prezencie",
    "Ходжу раз чи два на тиждень",
    # "czy" / "чи" inside a clause lists more often than it asks ("TK czy rezonans"), and "or just" too; a condition
    # whose main clause is a statement
    "Lekarz pytał o wiek, płeć czy grupę krwi",
    "Nigdy nie dostałem skierowania na TK czy rezonans",
    "Повернув товар з тих чи інших причин",
    "never reply to emails or just ignore them completely",
    "If they did they wouldn't charge us twice",
    "If your app does it - your app is broken",
    # found by a review of the change: idioms that open with the new words, counterfactuals, corrections, a doubt after
    # the alternative, "either ... or", nostalgia with "?!", agreement, praise, exclamations
    "Как часто бывает, курьер приехал раньше",
    "Jak często tu bywam, zawsze jest tłoczno",
    "How often I've been let down by you I can't even count",
    "Какого же было моё удивление, когда коробка оказалась пустой",
    "Od której strony by nie patrzeć, drogo",
    "If I had a pound for every delay would I be rich by now",
    "If that's your idea of fast delivery do you even know what slow means",
    "Sent it back last week or was it Monday, anyway still no refund",
    "Nie wiem czy tylko ja tak mam, ale aplikacja się zawiesza",
    "Płaciłam kartą czy tylko blikiem, już nie pamiętam",
    "Das dauert bei euch drei Wochen oder noch länger",
    "It's either a known issue or did I just get unlucky, whatever",
    "Where are my manners?! Thank you so much",
    "Где мои 20 лет?!",
    "Everyone got their refund, so did I in the end",
    "Pięknie zapakowane, ktoś wie co robi 👏",
    "Интересно, сколько ещё вы будете кормить нас завтраками",
    "Am I glad I switched to you guys",
    # a rhetorical "or what?" tag, and bait that offers earnings
    "Macht ihr alle Urlaub oder was?",
    "Zapomnieliście o nas czy co?",
    "Are you all on holiday or what?",
    "Want to earn 200 a day from your sofa? DM me",
]


@pytest.mark.parametrize(("text", "expected"), IN_ORDER + COMMENT_SHAPES)
def test_questions_in_order(text, expected):
    assert extract_questions(text) == expected
    assert all(q in text for q in expected)


@pytest.mark.parametrize("text", GENUINE_WITH_RANT_WORDS)
def test_genuine_questions_with_rant_words_are_kept(text):
    got = extract_questions(text)
    assert got and got[0] in text and text.startswith(got[0].split()[0]), got


@pytest.mark.parametrize("text", STATEMENTS + COMMENT_NON_QUESTIONS)
def test_statements_are_no_questions(text):
    assert extract_questions(text) == []


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@a @b @c @d you are a liar", "@USER you are a liar"),  # a reply to many: one mask
        ("@a, @b: see https://x.co/1 http://y.co/2", "@USER : see URL"),
        ("RT @a: @b @c so true", "RT @USER so true"),
        ("thanks @a and @b", "thanks @USER and @USER"),  # handles apart stay apart
        ("paste the URL URLs here", "paste the URL URLs here"),  # the word, not a mask run
        ("@a\n@b", "@USER \n @USER"),  # lines are kept
    ],
)
def test_normalize_collapses_runs_of_masks(text, expected):
    assert normalize(text) == expected


def test_normalize_keeps_the_older_version_for_models_trained_on_it():
    text = "@a @b @c you are a liar"
    assert normalize(text, version=1) == "@USER @USER @USER you are a liar"  # before runs were collapsed
    assert normalize(text, version=2) == normalize(text) == "@USER you are a liar"
    with pytest.raises(ValueError, match="version 3 is unknown"):
        normalize(text, version=3)
