"""Offline language identification restricted to the product's languages."""

from __future__ import annotations

import functools
import re

from models.schema import LANGUAGES, UNKNOWN_LANGUAGE

_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
# Letters that occur in one of the two Cyrillic languages only: decisive on short comments.
_UK_ONLY = re.compile(r"[іїєґІЇЄҐ]")
_RU_ONLY = re.compile(r"[ыэъёЫЭЪЁ]")
_CYRILLIC = re.compile(r"[а-яА-ЯіїєґІЇЄҐёЁ]")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
# Frequent words that exist in only one of the two languages (function words, brand-talk vocabulary).
_UK_WORDS = frozenset(
    [
        "що",
        "це",
        "як",
        "де",
        "коли",
        "чи",
        "та",
        "й",
        "мій",
        "моя",
        "моє",
        "мені",
        "вам",
        "ви",
        "нам",
        "дуже",
        "немає",
        "нема",
        "вже",
        "ще",
        "тільки",
        "лише",
        "від",
        "до",
        "й",
        "але",
        "або",
        "якщо",
        "тому",
        "бо",
        "треба",
        "можна",
        "буде",
        "було",
        "дякую",
        "будь",
        "ласка",
        "посилка",
        "замовлення",
        "ганьба",
        "прийшла",
        "прийшов",
        "досі",
        "тиждень",
        "гроші",
        "повернення",
        "підкажіть",
        "скажіть",
        "добрий",
        "день",
        "привіт",
        "вітаю",
        "зараз",
        "сьогодні",
        "коли",
        "ніхто",
        "нічого",
    ]
)
_RU_WORDS = frozenset(
    [
        "что",
        "это",
        "как",
        "где",
        "когда",
        "ли",
        "мой",
        "моя",
        "мое",
        "мне",
        "вам",
        "вы",
        "нам",
        "очень",
        "нет",
        "уже",
        "еще",
        "только",
        "от",
        "но",
        "или",
        "если",
        "потому",
        "надо",
        "можно",
        "будет",
        "было",
        "спасибо",
        "пожалуйста",
        "посылка",
        "заказ",
        "позор",
        "пришла",
        "пришел",
        "до",
        "сих",
        "пор",
        "неделю",
        "деньги",
        "возврат",
        "подскажите",
        "скажите",
        "добрый",
        "день",
        "привет",
        "здравствуйте",
        "сейчас",
        "сегодня",
        "никто",
        "ничего",
        "могу",
        "войти",
    ]
)


class LanguageDetector:
    """py3langid restricted to :data:`LANGUAGES`, with a Cyrillic script rule for ru/uk."""

    def __init__(self, languages: tuple[str, ...] = LANGUAGES):
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.languages = languages
        self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self._identifier.set_languages(list(languages))

    def detect(self, text: str) -> str:
        if not _LETTERS.search(text or ""):
            return UNKNOWN_LANGUAGE
        if _CYRILLIC.search(text) and "uk" in self.languages and "ru" in self.languages:
            uk, ru = bool(_UK_ONLY.search(text)), bool(_RU_ONLY.search(text))
            if uk != ru:
                return "uk" if uk else "ru"
            words = [w.lower() for w in _WORD.findall(text)]
            uk_votes = sum(w in _UK_WORDS for w in words)
            ru_votes = sum(w in _RU_WORDS for w in words)
            if uk_votes != ru_votes:
                return "uk" if uk_votes > ru_votes else "ru"
        lang, _ = self._identifier.classify(text)
        return str(lang)

    def detect_many(self, texts: list[str]) -> list[str]:
        return [self.detect(t) for t in texts]


@functools.lru_cache(maxsize=1)
def default_detector() -> LanguageDetector:
    return LanguageDetector()
