"""Hand-checked examples for the heads that have no labelled corpus in a language: complaints in pl, ru, uk
and de (only English complaints are labelled in the shared corpora), and toxicity in Ukrainian (the shared
toxicity corpora are pl, ru, en and de; Ukrainian toxic rows are only the seed set's). Prints, per head and
language, the champion's accuracy, the share of each class it gets right, its mean probability per class
and the ROC-AUC of that probability (how well it ranks, whatever the threshold). Written for this check, not
taken from any corpus.

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
    # Written before the seed set's Ukrainian toxicity rows; the brief for those rows named some of the same cases
    # (сукня next to сука, insults without swearing), so these 20 are not independent of them: see the 40 below
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
    # 40 more, written after the seed set gained its Ukrainian toxicity rows (seed_uk_toxicity.jsonl) by a writer
    # who saw neither those rows nor the 20 above: innocent look-alikes (сукня, Хуст, бляшанка, сукупний), minced
    # oaths (блін, трясця), angry but clean complaints; insults, threats, vulgar praise
    "uk, written blind": [
        ("де моя посилка, ідіоти безмозкі?? третій тиждень чекаю 🤬", 1),
        ("ГАНЬБА!!! третій тиждень не можу повернути гроші за куртку!!! подаю до суду", 0),
        ("купила сукню в червоному кольорі, сидить ідеально 😍 дякую", 0),
        ("охуєнна сукня, просто пиздець як сидить 🔥🔥", 1),
        ("блін, знову затримка рейсу на 4 години 😩 хоч би воду роздали", 0),
        ("@олег ти реально тупий чи прикидаєшся? мозок як у курки", 1),
        ("підкажіть, а доставка в Хуст є? 🙏", 0),
        ("ще раз кур'єр мені нахамить я його знайду і ноги повириваю, адресу знаю", 1),
        ("це шахрайство!!! ви списали з мене 300 грн за послугу яку я не підключала, пишу скаргу в НБУ", 0),
        ("звонікс, ви заїбали зі своїми тарифами, кожен місяць дорожче нахуй", 1),
        ("оператори на гарячій лінії — бидло неграмотне, сказать нормально нічо не можуть", 1),
        ("капець, доставка йшла 2 години, піца вже холодна. дуже розчарована", 0),
        ("ця туш просто охуєнна, бля, нічого кращого не пробувала 😍", 1),
        ("чи можна перевозити бляшанку з кавою в ручній поклажі?", 0),
        ("а модель на фото чого така страшна? жирна корова, хто таке в рекламу бере 🤮", 1),
        (
            "@ірина_п не погоджуюсь з вами, у мене з цим оператором жодних проблем не було. "
            "може варто перевірити налаштування телефону?",
            0,
        ),
        ("ваш банк — сборище ворюг і мразот, щоб ви всі позакривались", 1),
        ("трясця, додаток знову лежить, не можу оплатити комуналку", 0),
        ("шукаю шовкову хустку як на фото, є в наявності?", 0),
        ("@marina_k закрий рот, курво, тебе ніхто не питав", 1),
        ("кур'єр запізнився на 40 хв, але вибачився і дав знижку, все ок 👍", 0),
        ("хто у вас сайт робив, даун якийсь? нічого не працює", 1),
        ("ВИ ЗНУЩАЄТЕСЬ??? ТРЕТІЙ РАЗ ПЕРЕНОСИТЕ ДОСТАВКУ ХОЛОДИЛЬНИКА!!!", 0),
        ("пішли ви в сраку зі своєю доставкою, уйобки", 1),
        ("скільки коштує страхування при оформленні кредиту в додатку?", 0),
        ("менеджерка у вашому магазині на позняках — тупорила овца, ще й хамить", 1),
        ("доставка в Херсон зараз працює? хочу замовити батькам павербанк", 0),
        ("ахахах гляньте на цього клоуна в коментах, лох пздц 😂", 1),
        ("жахливий сервіс, більше ніколи не полечу вашою авіакомпанією. багаж загубили і ніхто не відповідає", 0),
        ("блять, знову списали гроші з картки, ви там охуїли всі чи шо??", 1),
        (
            "@андрій ви неправі, повернення коштів за законом 14 днів, а не 30. "
            "почитайте закон про захист прав споживачів",
            0,
        ),
        ("бабка на касі стара маразматичка, порахувати решту не може", 1),
        ("замовила мандарини, а прийшли наполовину гнилі. прошу повернути кошти", 0),
        ("якщо ще раз зірвете рейс, я вашому директору морду наб'ю, зрозуміли?", 1),
        ("дякую вашій підтримці, Оля дуже швидко допомогла 💛", 0),
        ("авіакомпанія гівно, пілоти криворукі, стюардеси хамки тупі", 1),
        ("для кредитки треба вказувати сукупний дохід сім'ї чи тільки мій?", 0),
        ("@dima_88 йди лікуйся, дебіл, тобі тільки в дурці коментувати", 1),
        ("хай йому грець, знову тариф підняли без попередження! переходжу до іншого оператора", 0),
        ("сука, третій раз замовляю і третій раз холодне, кухарі у вас руки з жопи", 1),
    ],
}

CHECKS = {"complaint": COMPLAINTS, "toxic": TOXIC}


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from models.store import alias_uri, configure_mlflow
    from service.predictor import load_failure, load_predictor

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=alias_uri())
    args = parser.parse_args()
    configure_mlflow(Path(os.environ.get("TRIAGE_HOME", ".triage")))
    try:
        predictor = load_predictor(args.model)
    except Exception as exc:  # MLflow raises several types for a missing model or alias
        parser.error(f"{load_failure(args.model, exc)} (train one, or pass --model)")
    print(f"model {predictor.version}")
    print("| head | lang | accuracy | positives found | negatives passed | mean P positives / negatives | ROC-AUC |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for head, examples in CHECKS.items():
        for group, rows in examples.items():
            lang = group.split(",")[0]
            preds = predictor.predict([t for t, _ in rows], [lang] * len(rows))
            said = [bool(getattr(p, head)) for p in preds]
            proba = [float(getattr(p, f"p_{head}")) for p in preds]
            truth = [bool(y) for _, y in rows]
            pos = [q for q, y in zip(proba, truth, strict=True) if y]
            neg = [q for q, y in zip(proba, truth, strict=True) if not y]
            found = sum(s and y for s, y in zip(said, truth, strict=True))
            passed = sum(not s and not y for s, y in zip(said, truth, strict=True))
            print(
                f"| {head} | {group} | {found + passed}/{len(rows)} | {found}/{len(pos)} | {passed}/{len(neg)} | "
                f"{sum(pos) / len(pos):.2f} / {sum(neg) / len(neg):.2f} | {roc_auc_score(truth, proba):.3f} |"
            )


if __name__ == "__main__":
    main()
