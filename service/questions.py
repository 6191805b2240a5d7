"""Extracting the questions of a comment, in the order asked, in pl, ru, uk, en and de.

A sentence is cut into clauses where a comma, dash, colon or "and" is followed by another interrogative
("when will it ship and can I pay by card?"). A clause is a question when it is the last clause of a
sentence that ends with "?" (but not "?!", which is rhetorical) or when it opens with an interrogative
or a verb-first question form ("czy", "когда", "чи", "wann", "ob", "do you", "liefert ihr").
"""

from __future__ import annotations

import re

# Words that open a question whatever punctuation follows ("czy jest w rozmiarze M").
_STRONG = "|".join(
    [
        # pl
        "czy|kiedy|gdzie|ile|jak długo|jak dlugo|jak mogę|jak moge|dlaczego|czemu|skąd|skad|dokąd|dokad|jakie|jaki|jaka|jakiego|jakim|jaką|kto|po co|na kiedy|"
        "do kiedy|od kiedy|o której|o ktorej|da się|da sie|mogę|moge|możecie|mozecie|można|mozna|macie|jest szansa",
        # ru
        "когда|где|сколько|как долго|как мне|почему|зачем|куда|откуда|какой|какая|какое|какие|каком|какую|каких|можно ли|есть ли|будет ли|"
        "будут ли|могу ли|можно|подскажите|скажите|кто|чей|чья",
        # uk
        "чи|коли|де|скільки|як довго|як мені|чому|навіщо|куди|звідки|який|яка|яке|які|якого|якому|хто|можна|підкажіть|скажіть",
        # en
        "(?:when|where|who|which)\s+(?:is|are|was|were|will|would|do|does|did|can|could|should|shall|has|have|had)|why|whether|how much|how many|how long|how far|how do|how can|how does|how to|"
        "any chance|any idea|any update|is there|are there",
        # de
        "wann|wo|wohin|woher|warum|wieso|weshalb|welche|welcher|welches|welchen|wer|ob|wie viel|wie lange|wie oft|wie weit|"
        "wie kann|wie lege|wie bekomme|gibt es",
    ]
)
# Relative pronouns: after a comma they start a relative clause, not a new question.
_RELATIVE = (
    "który|która|które|ktory|ktora|ktore|którą|который|которая|которое|которые|котрий|котра|котре|які|which|"
    "that|welche|welcher|welches|der|die|das"
)
# Interrogatives that also open exclamations ("What a joke.", "Jak pięknie!"): a question only with "?",
# or after "and" inside a question ("... i jak ją aktywować").
_WEAK = "what|how|co|jak|что|как|що|як|was|wie"
# Verb-first questions without "?": en auxiliaries, de finite verb + pronoun, ru/uk enclitics.
_VERB_FIRST = (
    r"(?:do|does|did|is|are|was|were|can|could|will|would|should|have|has)\s+(?:you|u|i|we|they|it|the|this|that|"
    r"there|my|your|he|she)\b"
    r"|[a-zäöüß]+(?:t|st|en|nn|ss)\s+(?:ihr|sie|es|das|man|du|ich|die|der)\b"
    r"|\S+\s+(?:ли|li)\b"
)
_W = r"(?![\w-])"  # "кто-то", "what-ever": not an interrogative
_STRONG_RE = re.compile(rf"^(?:(?:{_STRONG}){_W}|{_VERB_FIRST})", re.IGNORECASE)
_ANY_RE = re.compile(rf"^(?:(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})", re.IGNORECASE)
_LEAD = re.compile(r"^(?:(?:a|i|oraz|and|also|so|und|aber|и|а|но|і|й|та)\s+)+", re.IGNORECASE)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear \w+|cześć|czesc|hej|dzień dobry|dzien dobry|witam|здравствуйте|привет|добрый день|"
    r"вітаю|привіт|добрий день|hallo|guten tag|moin)\b[,!.]?\s*",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?…\n]+(?:[.!?…]+|\n|$)")
# Cut points: "and"/"i"/"und"/"и"/"і" before any interrogative; comma, dash or colon before a strong one.
_AND = r"(?:and|und|i|oraz|a|и|а|і|й|та)"
_CUT = re.compile(
    rf"(?:,\s*{_AND}\s+|\s+{_AND}\s+)(?=(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})"
    rf"|(?:,|\s[-–—]|:)\s*(?!(?:{_RELATIVE}){_W})(?=(?:{_STRONG}){_W})",
    re.IGNORECASE,
)


def _body(clause: str) -> str:
    return _LEAD.sub("", _GREETING.sub("", clause.strip()))


def _clean(clause: str) -> str:
    """Trim punctuation and a leading greeting ("Hi, do you ...?" -> "do you ...?"); stays a span of the text."""
    clause = clause.strip().strip(",;:-–— ").strip()
    rest = _GREETING.sub("", clause, count=1).strip()
    return rest if any(ch.isalpha() for ch in rest) else clause


def extract_questions(text: str) -> list[str]:
    """The questions of ``text`` in order, each an exact span of the text (trimmed)."""
    found: list[str] = []
    for match in _SENTENCE.finditer(text):
        sentence = match.group(0).strip()
        if not sentence or not any(ch.isalpha() for ch in sentence):
            continue
        rhetorical = "?!" in sentence or "!?" in sentence
        asked = "?" in sentence and not rhetorical
        exclaimed = sentence.rstrip().endswith("!") and not asked
        clauses = [_clean(c) for c in _CUT.split(sentence)]
        clauses = [c for c in clauses if any(ch.isalpha() for ch in c)]
        if rhetorical or exclaimed:
            continue
        first_is_question = False
        for i, clause in enumerate(clauses):
            body = _body(clause)
            last = i == len(clauses) - 1
            if i == 0:
                first_is_question = bool(_STRONG_RE.match(body)) or (asked and last)
                if first_is_question:
                    found.append(clause)
            elif (asked and last) or ((asked or first_is_question) and _ANY_RE.match(body)):
                # A later clause counts only inside a question: "Chuj wie, gdzie ..." is no question.
                found.append(clause)
    return found
