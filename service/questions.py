"""Extracting the questions of a comment, in the order asked, in pl, ru, uk, en and de.

A sentence is cut into clauses where a comma, dash, colon or "and" is followed by another interrogative
("when will it ship and can I pay by card?"). A clause is a question when it is the last clause of a
sentence that ends with "?" (but not "?!", which is rhetorical) or when it opens with an interrogative
or a verb-first question form ("czy", "когда", "чи", "wann", "ob", "do you", "liefert ihr"). A clause that
holds a rhetorical idiom of its language ("are you kidding me", "co wy tam", "сколько можно", "ви там що,
поснули", "geht's noch", a trailing "or what?") is no question.
"""

from __future__ import annotations

import re

# Words that open a question whatever punctuation follows ("czy jest w rozmiarze M").
_STRONG = "|".join(
    [
        # pl
        "czy|kiedy|gdzie|ile|jak długo|jak dlugo|jak mogę|jak moge|dlaczego|czemu|skąd|skad|dokąd|dokad|jakie|jaki|jaka|jakiego|jakim|jaką|kto|po co|na kiedy|"
        "do kiedy|od kiedy|o której|o ktorej|da się|da sie|mogę|moge|możecie|mozecie|można|mozna|macie|jest szansa|"
        r"na jakim|w jakim|jak (?:\w+ )?\w{2,}ć",  # "jak zrobić wymianę": how to + infinitive
        # ru
        "когда|где|сколько|как долго|как мне|почему|зачем|куда|откуда|какой|какая|какое|какие|каком|какую|каких|можно ли|есть ли|будет ли|"
        "будут ли|могу ли|можно|подскажите|скажите|кто|чей|чья|на каком|в каком|с какого|до какого|"
        r"как (?:\w+ )?\w{2,}(?:ить|ать|ять|еть|уть|ыть|оть|ти|чь)(?:ся)?",  # "как подключить тариф"
        # uk
        "чи|коли|де|скільки|як довго|як мені|чому|навіщо|куди|звідки|який|яка|яке|які|якого|якому|хто|можна|підкажіть|скажіть|"
        r"на якому|в якому|у якому|з якого|до якого|як (?:\w+ )?\w{2,}(?:ти|тися)",  # "як це зупинити"
        # en
        "(?:when|where|who|which)(?:\s+the\s+(?:hell|fuck|heck)|\s+on earth)?\s+(?:is|are|was|were|will|would|do|does|did|can|could|should|shall|has|have|had)|why|whether|how much|how many|how long|how far|how do|how can|how does|how to|"
        "any chance|any idea|any update|is there|are there",
        # de
        "wann|wo|wohin|woher|warum|wieso|weshalb|welche|welcher|welches|welchen|wer|ob|wie viel|wie lange|wie oft|wie weit|"
        "wie kann|wie lege|wie bekomme|gibt es|ab wann|bis wann|seit wann|an wen|bei wem|mit wem|für wen",
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
    r"^(?:hi|hello|hey|dear \w+|cześć|czesc|hej|halo|dzień dobry|dzien dobry|witam|здравствуйте|привет|добрый день|"
    r"вітаю|привіт|добрий день|hallo|guten tag|moin)\b[,!.]?\s*",
    re.IGNORECASE,
)
# Rhetorical questions in rants and jabs ("Are you kidding me?", "Co wy tam robicie?", "Сколько можно?",
# "Ви там всі поснули?", "Geht's noch?"): data/README.md labels them question = 0. A clause is dropped when
# it holds one of these idioms (searched anywhere in it), ends in an "or what?" tag, or is nothing but
# "seriously?" / "really?". The idioms are the common ones of each language, not a lexicon of insults:
# "Where the fuck is my parcel" and "де мій рефанд, суки?" stay genuine questions.
_RHETORICAL_IDIOMS = "|".join(
    [
        # en
        r"(?:are|r) (?:you|u) (?:\w+ )?(?:kidding|joking|serious|for real|insane|crazy|mad|nuts|stupid|idiots?|morons?|"
        r"blind|deaf|asleep|drunk|high|out of your minds?)|kidding me|is (?:this|that) a joke|you call (?:this|that)|"
        r"how hard (?:is it|can it be|could it be)|is it (?:really )?(?:that|so) hard|"
        r"how many (?:more )?times (?:do|must|will|should|have) (?:i|we) (?:have to |need to )?(?:call|ask|write|tell|repeat|"
        r"explain|complain|email|message|chase)|"
        r"what(?:'s| is| the (?:hell|fuck) is) wrong with (?:you|u|them|this company)|what am i (?:even )?paying (?:you )?for|"
        r"who (?:the (?:hell|fuck) )?(?:\w+ )?(?:packs|designs|does|makes|writes|builds|ships|thought) (?:\w+ ){0,4}like (?:this|that)|"
        r"who thought (?:this|that|it) (?:was|is|would be) a good idea|who are you to|"
        r"do (?:you|u) (?:people |guys )?even (?:read|care|listen|test|check|think)|"
        r"(?:aren't|are) you (?:even )?ashamed|have you no shame",
        # pl
        r"jaja sobie robicie|żartujecie|zartujecie|(?:czy )?to (?:jest )?(?:jakiś|jakis) żart|"
        r"(?:a )?(?:wy|ty) (?:tam )?co(?:,|\s*\?|\s+tam)|co (?:wy|ty) tam|(?:wy|ty) (?:tak )?(?:serio|poważnie|powaznie)|"
        r"ile (?:można|mozna)|ile razy (?:mam|muszę|musze|trzeba|jeszcze) (?:\w+ )?(?:dzwonić|dzwonic|pisać|pisac|prosić|prosic|"
        r"powtarzać|powtarzac|tłumaczyć|tlumaczyc|zgłaszać|zglaszac|czekać|czekac)|"
        r"(?:czy )?(?:to )?(?:aż )?(?:takie|tak) trudne|co (?:jest )?z (?:wami|tobą|toba) (?:jest )?nie tak|"
        r"za co (?:ja )?(?:wam )?(?:płacę|place|płacimy|placimy)|kto (?:wam )?tak |kto (?:to )?wymyślił|kto to wymyslil|"
        r"nie wstyd (?:wam|ci)|(?:czy )?(?:wy )?(?:tam )?(?:wszyscy )?(?:śpicie|spicie|zasnęliście|oszaleliście|"
        r"zwariowaliście|zwariowaliscie|oszaleliscie)|(?:powaliło|pojebało|popierdoliło) (?:was|cię|cie)|"
        r"kim (?:ty )?jesteś,? żeby|kim jestes,? zeby|(?:wy|ty) (?:tam )?(?:wszyscy )?(?:jesteście |jestescie |jesteś |jestes )?"
        r"(?:głupi|glupi|idioci|debile|ślepi|slepi|nienormalni|idiotami|debilami)",
        # ru
        r"(?:вы|ты) (?:там )?(?:что|чё|че|шо)(?:,|\s*\?|\s+там)|(?:что|чё|че) (?:вы|ты) там|(?:вы|ты) (?:это )?серь[её]зно|"
        r"издеваетесь|издеваешься|прикалываетесь|сколько (?:можно|раз можно)|"
        r"(?:неужели|разве|так|настолько) (?:так )?(?:сложно|трудно)|что с (?:вами|тобой) (?:не так|такое)|"
        r"за что (?:я )?(?:вам )?(?:плачу|платим)|кто (?:\w+ )?так (?:\w+ )?(?:пакует|упаковывает|делает|пишет)|кто (?:это )?придумал|"
        r"кто (?:\w+ )?(?:такой|такая|такие),? чтобы|(?:вы|ты) (?:там )?(?:все |вообще |совсем )?(?:тупые|тупой|тупая|"
        r"идиоты|идиот|дебилы|дебил|дураки|дурак|слепые|ненормальн\w+)|не стыдно|(?:вы|ты) (?:вообще|совсем) (?:читаете|думаете|соображаете|"
        r"нормальн\w+|больн\w+)|(?:охренели|офигели|обалдели|охуели|ахуели|сдурели|спятили|с ума сошли|"
        r"уснули|заснули|оборзели|совсем уже)",
        # uk
        r"(?:ви|ти) (?:там )?(?:що|шо)(?:,|\s*\?|\s+там)|(?:що|шо) (?:ви|ти) там|(?:ви|ти) (?:це )?серйозно|"
        r"знущаєтесь|знущаєтеся|знущаєшся|прикалуєтесь|скільки (?:можна|разів можна)|"
        r"(?:невже|хіба|так|настільки) (?:так )?(?:складно|важко)|що з (?:вами|тобою) (?:не так|таке)|"
        r"за що (?:я )?(?:вам )?(?:плачу|платимо)|хто (?:\w+ )?так (?:\w+ )?(?:пакує|робить|пише)|хто (?:це )?придумав|"
        r"хто (?:\w+ )?(?:такий|така|такі),? щоб|(?:ви|ти) (?:там )?(?:всі |взагалі |зовсім )?(?:тупі|тупий|тупа|"
        r"ідіоти|ідіот|дебіли|дебіл|дурні|дурень|сліпі|ненормальн\w+)|не соромно|(?:ви|ти) (?:взагалі|зовсім) (?:читаєте|думаєте|"
        r"нормальн\w+|хвор\w+)|(?:охуїли|охуїлі|офігіли|здуріли|подуріли|з глузду з'їхали|поснули|заснули|"
        r"обурілі|озвіріли)",
        # de
        r"(?:wollt|willst) (?:ihr|du) mich (?:\w+ )?(?:verarschen|veräppeln|verar?schen|auf den arm nehmen)|"
        r"(?:soll|ist) das (?:\w+ )?ein witz|geht'?s noch|gehts noch|habt ihr (?:sie )?noch alle|"
        r"wie oft (?:denn )?noch|wie oft (?:soll|muss) ich (?:euch |noch |das )*(?:anrufen|schreiben|fragen|sagen|"
        r"erklären|nachfragen|wiederholen)|(?:ist )?(?:das|es) (?:denn )?(?:wirklich )?so schwer|wie schwer kann|"
        r"was (?:ist|stimmt) (?:denn )?(?:los )?(?:mit euch|bei euch)(?: nicht)?|wofür (?:be)?zahle ich|"
        r"wer (?:\w+ )?(?:packt|macht|plant|baut) (?:denn )?(?:so|sowas|so was)\b|wer hat sich das ausgedacht|"
        r"schämt ihr euch nicht|schämen sie sich nicht|wer bist du(?: denn)?,? dass|"
        r"seid ihr (?:alle )?(?:noch )?(?:ganz )?(?:bei trost|wahnsinnig|verrückt|bescheuert|blöd|dumm|irre|blind|taub|"
        r"noch zu retten|eingeschlafen)|schlaft ihr",
    ]
)
_RHETORICAL = re.compile(
    rf"(?<![\w-])(?:{_RHETORICAL_IDIOMS})(?![\w-])"
    r"|(?<![\w-])(?:or what|or something|czy co|czy jak|или (?:что|как|чё)|чи (?:що|як|шо)|oder was|oder wie)\W*$"
    r"|^(?:seriously|srsly|really|for real|wtf|serio|poważnie|powaznie|naprawdę|naprawde|серь[её]зно|реально|правда|"
    r"серйозно|справді|ernsthaft|im ernst|echt jetzt|wirklich)\W*$",
    re.IGNORECASE,
)
# Sentences end at . ! ? … a line break, or emoji, which people type as punctuation ("3 days now 😤 when is it fixed").
_EMOJI = "\U0001f300-\U0001faff\u2600-\u27bf"
_SENTENCE = re.compile(rf"[^.!?…\n{_EMOJI}]+(?:[.!?…{_EMOJI}\ufe0f\u200d]+|\n|$)")
# Cut points: "and"/"i"/"und"/"и"/"і" before any interrogative; comma, dash or colon before a strong one.
_AND = r"(?:and|und|i|oraz|a|и|а|і|й|та)"
_CUT = re.compile(
    rf"(?:,\s*{_AND}\s+|\s+{_AND}\s+)(?=(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})"
    rf"|(?:,|\s[-–—]|:)\s*(?!(?:{_RELATIVE}){_W})(?=(?:{_STRONG}){_W})",
    re.IGNORECASE,
)

# "Krem ma SPF czy nie", "крем має SPF чи ні": an either-or tag makes a question without "?" too.
_OR_NOT = re.compile(r"\s(?:or not|czy nie|или нет|чи ні|oder nicht)\W*$", re.IGNORECASE)
_CUT_KEEP = re.compile(f"({_CUT.pattern})", re.IGNORECASE)  # the same cuts, keeping what was cut at


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
        if rhetorical or exclaimed:
            continue
        pieces = _CUT_KEEP.split(sentence)  # clause, separator, clause, ...
        clauses = [(sep, _clean(c)) for sep, c in zip(["", *pieces[1::2]], pieces[::2], strict=True)]
        clauses = [(sep, c) for sep, c in clauses if any(ch.isalpha() for ch in _body(c))]  # "halo, dlaczego ..."
        first_is_question = False
        for i, (sep, clause) in enumerate(clauses):
            body = _body(clause)
            if _RHETORICAL.search(body):
                continue
            last = i == len(clauses) - 1
            # a colon or dash announces the questions: "Mam pytanie – kiedy przyjdzie, czy jest płatna"
            announced = sep.strip()[:1] in (":", "-", "–", "—") and not first_is_question
            if i == 0 or announced:
                first_is_question = bool(_STRONG_RE.match(body) or _OR_NOT.search(body)) or (asked and last)
                if first_is_question:
                    found.append(clause)
            elif (asked and last) or ((asked or first_is_question) and _ANY_RE.match(body)):
                # A later clause counts only inside a question: "Chuj wie, gdzie ..." is no question.
                found.append(clause)
    return found
