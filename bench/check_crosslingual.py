"""Hand-checked examples for the heads that have no labelled corpus in a language: complaints in pl, ru, uk
and de (only English complaints are labelled in the shared corpora), and toxicity in Ukrainian (the shared
toxicity corpora are pl, ru, en and de; Ukrainian toxic rows are only the seed set's). Prints, per head and
language, the champion's accuracy, the share of each class it gets right and its mean probability per
class. Written for this check, not taken from any corpus.

    .venv/bin/python bench/check_crosslingual.py [--model models:/comment-triage@champion]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

COMPLAINTS = {
    "pl": [
        ("Zamówiłam kurtkę 3 tygodnie temu i do dziś nic nie przyszło, nikt nie odpisuje na maile.", 1),
        ("Słuchawki przestały działać po tygodniu, a serwis odrzucił reklamację.", 1),
        ("Pobraliście mi opłatę dwa razy za to samo zamówienie. Proszę o zwrot.", 1),
        ("Kurier rzucił paczkę pod drzwi i wszystko w środku było potłuczone.", 1),
        ("Aplikacja po aktualizacji ciągle się wyłącza, nie mogę zapłacić rachunków.", 1),
        ("Super obsługa, paczka przyszła następnego dnia, dziękuję!", 0),
        ("Czy macie te buty w rozmiarze 38?", 0),
        ("Oznaczam @kasia bo szukała takiej sukienki 😍", 0),
        ("Kiedy startuje promocja na Black Friday?", 0),
        ("Byłam wczoraj w sklepie w Krakowie, bardzo miła pani przy kasie.", 0),
    ],
    "ru": [
        ("Заказ оплачен две недели назад, до сих пор не отправлен, поддержка молчит.", 1),
        ("Привезли холодную пиццу и забыли напиток, курьер нагрубил.", 1),
        ("С карты списали деньги дважды, верните пожалуйста.", 1),
        ("Телефон сломался через месяц, в гарантии отказали.", 1),
        ("Приложение банка не открывается с утра, не могу перевести деньги.", 1),
        ("Спасибо, всё пришло вовремя, качество отличное!", 0),
        ("Есть ли доставка в Казань?", 0),
        ("Подскажите, до скольки работает магазин в субботу?", 0),
        ("Классная реклама, музыка огонь 🔥", 0),
        ("Жду новую коллекцию, уже присмотрела пару вещей.", 0),
    ],
    "uk": [
        ("Замовлення не прийшло вже третій тиждень, відповіді немає.", 1),
        ("Крем викликав алергію, а повернути гроші відмовляються.", 1),
        ("Кур'єр запізнився на дві години і привіз не те замовлення.", 1),
        ("Інтернет не працює з учора, а підтримка не бере слухавку.", 1),
        ("Зняли гроші за підписку, яку я скасувала місяць тому.", 1),
        ("Дякую, все сподобалось, замовлятиму ще!", 0),
        ("Чи є ця сукня в чорному кольорі?", 0),
        ("Коли відкриється магазин у Львові?", 0),
        ("Дуже гарне фото, надихає 😊", 0),
        ("Позначаю подругу, їй точно сподобається.", 0),
    ],
    "de": [
        ("Meine Bestellung ist seit drei Wochen unterwegs und niemand antwortet auf meine Mails.", 1),
        ("Der Mixer war nach zwei Tagen kaputt und die Reklamation wurde abgelehnt.", 1),
        ("Ihr habt mir den Betrag doppelt abgebucht, ich will mein Geld zurück.", 1),
        ("Das Paket kam völlig zerdrückt an, die Hälfte war kaputt.", 1),
        ("Seit dem Update stürzt die App ständig ab, so kann ich nicht bezahlen.", 1),
        ("Tolle Beratung im Laden, vielen Dank!", 0),
        ("Gibt es den Pulli auch in Größe M?", 0),
        ("Wann kommt die neue Kollektion raus?", 0),
        ("Schönes Foto, richtig Lust auf Sommer ☀️", 0),
        ("Markiere mal @lena, die sucht sowas schon lange.", 0),
    ],
}


# Toxic: insults, threats and vulgar swearing; not toxic: angry or rude-sounding complaints without insults or
# swearing (the hard cases for a brand: they need an answer, not hiding), and ordinary comments.
TOXIC = {
    "uk": [
        ("Ви всі там ідіоти, хто вас узагалі на роботу взяв?", 1),
        ("Закрийте свій рот, клоуни, ніхто вашої думки не питав.", 1),
        ("Якого хуя ви досі не відправили моє замовлення?", 1),
        ("Ідіть нахуй зі своєю доставкою.", 1),
        ("Адмін цієї сторінки — тупа вівця, видаляє все підряд.", 1),
        ("Ваша реклама — лайно, як і ви самі.", 1),
        ("Дебіли, навіть телефон нормально продати не можете.", 1),
        ("Ця блядська компанія знову мене обдурила.", 1),
        ("Знайду тебе, кур'єре, і ноги переламаю.", 1),
        ("Ти жалюгідний нікчема, а не менеджер.", 1),
        ("Це жахливий сервіс!!! Третій тиждень чекаю посилку!!!", 0),
        ("Я дуже розчарована якістю, більше нічого у вас не замовлятиму.", 0),
        ("ЧОМУ ніхто не відповідає на дзвінки?! Це неприпустимо!", 0),
        ("Поверніть гроші, товар прийшов зламаний.", 0),
        ("Дякую, все прийшло вчасно, дуже задоволена!", 0),
        ("Чи є ця сукня в розмірі M?", 0),
        ("Класна реклама, музика супер 🔥", 0),
        ("Коли буде знижка на навушники?", 0),
        ("Ціни у вас кусаються, але якість того варта.", 0),
        ("Мій кіт у захваті від нового корму 😺", 0),
    ],
}

CHECKS = {"complaint": COMPLAINTS, "toxic": TOXIC}


def main() -> None:
    from models.store import alias_uri, configure_mlflow
    from service.predictor import load_predictor

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=alias_uri())
    args = parser.parse_args()
    configure_mlflow(Path(os.environ.get("TRIAGE_HOME", ".triage")))
    predictor = load_predictor(args.model)
    print(f"model {predictor.version}")
    print("| head | lang | accuracy | positives found | negatives passed | mean P positives / negatives |")
    print("|---|---|---:|---:|---:|---:|")
    for head, examples in CHECKS.items():
        for lang, rows in examples.items():
            preds = predictor.predict([t for t, _ in rows], [lang] * len(rows))
            said = [bool(getattr(p, head)) for p in preds]
            proba = [float(getattr(p, f"p_{head}")) for p in preds]
            truth = [bool(y) for _, y in rows]
            pos = [q for q, y in zip(proba, truth, strict=True) if y]
            neg = [q for q, y in zip(proba, truth, strict=True) if not y]
            found = sum(s and y for s, y in zip(said, truth, strict=True))
            passed = sum(not s and not y for s, y in zip(said, truth, strict=True))
            print(
                f"| {head} | {lang} | {found + passed}/{len(rows)} | {found}/{len(pos)} | {passed}/{len(neg)} | "
                f"{sum(pos) / len(pos):.2f} / {sum(neg) / len(neg):.2f} |"
            )


if __name__ == "__main__":
    main()
