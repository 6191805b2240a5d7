"""Extracting the questions of a comment, in the order asked, in pl, ru, uk, en and de.

A sentence ends at . ! ? … a line break, or a run of emoji before a capital or a question ("Super 😍 Czy
jest w M?"). It is cut into clauses where a comma, dash, colon or "and" is followed by another interrogative
("when will it ship and can I pay by card?"). A clause is a question when it is the last clause of a sentence
that ends with "?" (but not "?!", which is rhetorical) or when it opens with an interrogative or a verb-first
question form ("czy", "когда", "чи", "wann", "ob", "do you", "liefert ihr"). A clause that says a question
follows ("Zastanawiam się, czy ...", "wollte fragen, ob ...") makes the next one a question, and a last clause
that only a question opens ("..., czy mogę to wymienić", "..., can i still change it") or whose interrogative has a
modal, an infinitive or the verb after it ("..., gdzie mogę dopisać NIP", "..., wann kommt das Paket") is one without
"?" too; without "?", a question ends where a reason or a remark follows it ("чи є доставка в Житомир, бо ..."). In a
sentence that ends in "?", a run of emoji after a remark starts the question ("Ta kurtka to sztos 😍 będzie w XS?");
"Czy A, czy B?" is one question. Without "?" a condition before a question ("If I cancel now do I get ...",
"jeśli ... to czy ..."), and an alternative with its verb first or one that narrows ("... or did I get a bad batch",
"... или только под заказ") ask too (not "czy" / "чи" alone inside a clause: in prose it lists more often than it
asks, "TK czy rezonans"); "Where is my order?!" asks for all its "?!". Latin look-alikes inside Cyrillic words
("скiльки") are read as Cyrillic.
A clause that holds a rhetorical idiom of its language ("are you kidding me", "co wy tam robicie", "сколько
можно?", "ви там що, поснули", "geht's noch") or spam bait ("Who wants to win a FREE phone?") is no question,
unless it asks for a choice; nor is "whoever ..., that one ..." ("Кто опоздал, тот ..."), an "or what?" tag or
"So do I". Handles and greetings that open a question, emoji at its ends and a closing full stop are trimmed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# "What do I do now": a question wherever it stands, with or without "?".
_WHAT_TO_DO = (
    r"co (?:mam|mogę|moge|powinienem|powinnam) (?:teraz )?(?:zrobi[ćc]|robi[ćc])|что (?:мне )?(?:теперь )?делать|"
    r"що (?:мені )?(?:тепер )?робити|what (?:should|can) i do|what do i do|was (?:soll|kann|muss) ich (?:jetzt |nun )?"
    r"(?:tun|machen)"
)
# "what size does ...", "has anyone tried ...": no statement opens with them, so they ask wherever the clause stands
_WHAT_ASKS = (
    r"what (?:time|day|date|size|grit|colou?r)\s+(?:does|do|did|will|can|should|would)(?![\w-])|"  # not "what time is it"
    r"(?:has|have|did) any(?:one|body) (?:else |actually |ever )?(?!(?:had|got) (?:an? )?(?:worse|better))"
    r"(?:tried|used|had|got|bought|managed|received|ordered|"
    r"returned)(?![\w-])"
)
# Words that open a question whatever punctuation follows ("czy jest w rozmiarze M").
_STRONG = "|".join(
    [
        _WHAT_TO_DO,
        # pl
        "czy|kiedy|gdzie|ile|jak długo|jak dlugo|jak mogę|jak moge|dlaczego|czemu|skąd|skad|dokąd|dokad|jakie|jaki|jaka|jakiego|jakim|jaką|kto|po co|na kiedy|"
        "do kiedy|od kiedy|o której|o ktorej|do której|do ktorej|od której(?! strony)|od ktorej(?! strony)|jak często(?! (?:bywa|tu bywam))|jak czesto(?! bywa)|da się|da sie|mogę|moge|możecie|mozecie|można|mozna|macie|jest szansa|"
        r"na jakim|w jakim|jak (?!nie |widac|widać|zwykle|zawsze)(?:\w+ )?(?!nic\b|ojciec|koniec|chlopiec|chłopiec|tysiac|"
        r"miesiac|zajac|pajac)\w+(?:ć|[aeiyu]c)(?![\w-])(?!\s*,)",  # "jak zrobić wymianę", "jak to wylaczyc"
        # ru
        r"когда|где|сколько|до скольки|во сколько|как долго|как часто(?! бывает)|как мне|какого(?! же| было|\s+\w+\s+ни\b)|почему|зачем|куда|откуда|какой|какая|какое|какие|каком|какую|каких|можно ли|есть ли|будет ли|"
        "будут ли|могу ли|можно|подскажите|(?:не )?подскажете|скажите|кто|чей|чья|на каком|в каком|с какого|до какого|"
        r"как (?!ни |не )(?:\w+ )?\w{2,}(?:ить|ать|ять|еть|уть|ыть|оть|ти|чь)(?:ся)?(?![\w-])(?!\s*,)",  # "как подключить тариф"
        # uk
        "чи|коли|де|скільки|до котрої|о котрій|як довго|як часто(?! буває)|як мені|чому|навіщо|куди|звідки|який|яка|яке|які|якого|якому|хто|можна|підкажіть|(?:не )?підкажете|скажіть|"
        r"на якому|в якому|у якому|з якого|до якого|як (?!ні |не )(?:(?:у|в|на|з|до|для|через|при) \w+ |\w+ )?(?!проти\b)\w{2,}(?:ти|тися)(?![\w-])(?!\s*,)",  # "як це зупинити"
        # en
        r"(?:when|where|who|which)(?:\s+the\s+(?:hell|fuck|f\*+|heck)|\s+on earth)?\s+(?:is|are|was|were|will|would|do|does|did|can|could|should|shall|has|have|had)|why|whether|how much|how many|how long|how far|how do|how can|how does|how to|"
        r"how often(?= (?:do|does|did|should|can|could|will|would|is|are|must|have|has)\b)|any chance|any idea|any update|is there|are there|"
        r"(?:when|where)['’]s(?=\s)|"
        rf"{_WHAT_ASKS}|"
        r"what(?:'s| is) the (?:actual )?difference",
        # de
        r"was kostet(?! schon| die welt)|was kosten|wann|wo|wohin|woher|warum|wieso|weshalb|welche|welcher|welches|welchen|welchem|wer|ob|wie viel|wieviel|ab wieviel|wie lange|wie lang(?= (?:dauert|braucht|brauchen|ist|sind|hält|halten|geht|gilt|läuft|muss|kann|wird|bleibt|hat)\b)|wie oft|wie weit|"
        "wie kann|wie lege|wie bekomme|gibt es|gibt's|gibts|ab wann|ab welche[mnrs]?|bis wann|seit wann|an wen|bei wem|mit wem|für wen",
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
_AUX_EN = r"(?:do|does|did|is|are|r|was|were|can|could|will|would|should|have|has)\s+"
_VERB_FIRST_EN = (
    rf"(?:am\s+i\b|{_AUX_EN}(?:you|u|i|we|they|it|the|this|that|"
    r"there|my|your|he|she|someone|somebody)\b)"
)
# ... with a pronoun subject: without "?" or after a comma "was the best gift ever" and "did the trick" are statements
_VERB_FIRST_EN_ASKS = (
    rf"(?:am\s+i\b|{_AUX_EN}(?:you|u|i|we|they|it|there|he|she|someone|somebody)\b)"  # "can someone ..."
)
_LI = r"[\w'’-]++\s+(?:ли|li)\b"  # "придёт ли", "есть ли": the Russian yes/no question
# "Liefert ihr ...", "Kann man ...": a finite verb, then its subject (not a conjunction or an adverb: "wenn es", "zuerst das")
_VERB_FIRST_DE = (
    r"(?!(?:wenn|denn|dann|dass|fast|erst|zuerst|nicht|jetzt|seit|sonst|meist|damit|statt|selbst)\s)"
    r"(?:[a-zäöüß]+(?:t|st|en|nn|ss)|wird|soll|darf)\s+(?:ihr|sie|es|das|man|du|ich|die|der)\b"
)
_VERB_FIRST = rf"{_VERB_FIRST_EN}|{_VERB_FIRST_DE}|{_LI}"
# ... after a comma only the common ones ("..., inzwischen das dritte Mal" and "..., sodass ich" go on the sentence)
_VERB_FIRST_DE_COMMON = (
    r"(?:kann|könnt|können|muss|müsst|müssen|soll|sollt|sollen|darf|dürft|dürfen|will|wollt|wollen|wird|werden|gibt|"
    r"habt|hat|haben|ist|sind|seid|geht|kommt|liefert|liefern|bekomme|bekommt|bekommen|brauche|brauch|braucht|"
    r"funktioniert|klappt|passt|gilt|kostet|dauert|nimmt|nehmt|macht|machen)\s+(?:ihr|sie|es|das|man|du|ich)\b"
)
# "Хтось знає, коли ...", "Does anyone know ...": asked of everyone, the brand included
_ANYONE = (
    r"(?:хтось|хто-небудь|кто-нибудь|кто-то|ktoś|ktos|(?:does )?any(?:one|body)|(?:weiß|weiss|kennt) jemand) "
    r"(?:знає|знает|wie|knows?|kennt|in der nähe)(?!,?\s+(?:co robi|толк|что делает|що робить|what (?:they|he|she)(?:'re|'s| are| is) doing|"
    r"(?:what|co to (?:jest|znaczy)|что такое|що таке|was) (?:customer service|obsługa klienta|сервис|сервіс|kundenservice)))"
)
# Openings that only a question has, with or without "?" and wherever the clause stands: unlike "gdzie", "где",
# "when" or a German verb-first clause, none of them opens a statement ("Polecam ✅ gdzie indziej drożej").
_QUESTION_ONLY = (
    rf"(?:czy|чи|ob|whether|any idea|any chance|подскажите|подскажи|(?:не )?подскажете|підкажіть|підкажи|(?:не )?підкажете|"
    r"скажите|скажіть)(?![\w-])"
    rf"|{_WHAT_TO_DO}|{_WHAT_ASKS}|{_VERB_FIRST_EN_ASKS}|{_LI}|{_ANYONE}"
)


def _leads_into(words: str) -> str:
    """A lookahead: a comma or a space, then one of ``words`` (a "curious" that asks only before them)."""
    return rf"(?=(?:,\s*|\s+)(?:{words})\b)"


# "curious" and "wonder" lead into a question only before these ("I wonder why I even bother" asks nothing)
_WONDER_ASKS = _leads_into("if|whether|when|where|which|how much|how many|how long")
# ... and "ciekawa jestem", "интересно", "цікаво" before these ("интересно, как вы это объясните" asks nothing)
_CURIOUS_ASKS_PL = _leads_into(r"czy|kiedy|gdzie|ile(?! jeszcze)|jak długo|jak dlugo|do kiedy|od kiedy")
_CURIOUS_ASKS_RU = _leads_into(
    r"когда(?! (?:вы|ты) уже)|где|сколько(?! ещё| еще)|можно ли|есть ли|будет ли|будут ли|\w+ ли"
)
_CURIOUS_ASKS_UK = _leads_into(r"чи|коли|де|скільки(?! ще)")
# A clause that says a question follows ("Zastanawiam się, czy ...", "Хотела уточнить, ...", "wondering if ...",
# "wollte fragen, ob ..."): the clause after it is asked, with or without "?".
_ASKING = (
    r"zastanawiam si[ęe]|chcia(?:ł|l)(?:a|e)?bym (?:zapyta[ćc]|si[ęe] dowiedzie[ćc]|wiedzie[ćc])|chc[ęe] zapyta[ćc]|"
    rf"ciekawi mnie|(?:ciekaw[ay]? jestem|jestem ciekaw[ay]?|ciekawe){_CURIOUS_ASKS_PL}|интересно{_CURIOUS_ASKS_RU}|"
    r"хотел(?:а|и)? (?:бы )?(?:уточнить|узнать|спросить)|хочу (?:уточнить|узнать|спросить)|интересует|"
    r"хоті(?:в|ла|ли) (?:би |б )?(?:уточнити|дізнатися|дізнатись|запитати|спитати)|хочу (?:уточнити|дізнатися|запитати|"
    rf"спитати)|цікавить|цікаво{_CURIOUS_ASKS_UK}|(?:(?:i'm|i am|i was|am|was|just) )?wondering|"
    rf"(?:(?:i'm|i am|just) )?curious{_WONDER_ASKS}|(?:i )?wonder{_WONDER_ASKS}|"  # _LEAD took "I" off
    rf"i'?d like to know|(?:i )?(?:want|wanted) to (?:ask|know|check)|just checking{_WONDER_ASKS}|"
    r"(?:ich )?(?:wollte|möchte|moechte|würde|wuerde) (?:gerne? )?(?:fragen|wissen)|(?:ich )?(?:hätte|haette) gerne? "
    rf"gewusst|ich frage mich|(?:(?:würd|würde|wuerde) mich|mich (?:würd|würde|wuerde)) (?:mal |echt |schon )?interessieren|{_ANYONE}"
)
_W = r"(?![\w-])"  # "кто-то", "what-ever": not an interrogative
_STRONG_RE = re.compile(rf"^(?:(?:{_STRONG}){_W}|{_VERB_FIRST})", re.IGNORECASE)
_ANY_RE = re.compile(rf"^(?:(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})", re.IGNORECASE)
_LEAD = re.compile(r"^(?:(?:a|i|oraz|and|also|so|und|aber|и|а|но|і|й|та|anyway|btw)\s+)+", re.IGNORECASE)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|dear \w+|good (?:morning|afternoon|evening)|cześć|czesc|hej|halo|dzień dobry|dzien dobry|"
    r"dobry wieczór|dobry wieczor|witam|здравствуйте|здрасьте|привет|добрый день|добрый вечер|доброе утро|вітаю|привіт|"
    r"добрий день|доброго дня|добрий вечір|доброго ранку|hallo|guten tag|guten morgen|guten abend|moin|servus)\b[,!.]?\s*"
    r"|^(?:ребят|ребята|народ|девочки|девчонки|дівчата|хлопці|друзі|ludzie|dziewczyny|guys|folks|leute|кстати|до речі|"
    r"btw|by the way|przy okazji|übrigens)(?:\s*,\s*|\s*$)",
    re.IGNORECASE,
)
# Rhetorical questions in rants and jabs ("Are you kidding me?", "Co wy tam robicie?", "Сколько можно?",
# "Ви там всі поснули?", "Geht's noch?"): data/README.md labels them question = 0. A clause is dropped when it
# holds an idiom that is rhetorical wherever it stands (_RHETORICAL_ANYWHERE), or ends in one that opens genuine
# questions too ("Сколько можно хранить крем?", "What am I paying for with the fee?": _RHETORICAL_AT_END), and
# asks for no choice ("Кто так упаковывает — склад или курьер?" is genuine). Only idioms, not a lexicon of
# insults: "Where the fuck is my parcel" and "де мій рефанд, суки?" stay questions.
_RHETORICAL_ANYWHERE = "|".join(
    [
        # en
        r"(?:are|r) (?:you|u) (?:\w+ )?(?:kidding|joking|insane|crazy|nuts|stupid|idiots?|morons?|out of your minds?)|"
        r"are (?:you|u) (?:people |guys |all )?(?:blind|deaf|asleep)|kidding me|is (?:this|that) (?:some kind of )?a joke|"
        r"what(?:'s| is| the (?:hell|fuck) is) wrong with (?:you|u)|who are you to|have you no shame|"
        r"who thought (?:this|that|it) (?:was|is|would be) a good idea|how hard can it be|"
        r"who (?:the (?:hell|fuck) )?(?:\w+ )?(?:packs|designs|does|makes|writes|builds|ships) (?:\w+ ){0,4}like (?:this|that)",
        # pl
        r"jaja sobie robicie|żartujecie sobie|(?:czy )?to (?:jest )?(?:jakiś|jakis) żart|"
        r"co (?:wy|ty) tam (?:robicie|wyprawiacie|odwalacie|wyrabiacie|odpierdalacie)|"
        r"ile (?:można|mozna) (?:jeszcze )?(?:czekać|czekac|zwlekać|zwlekac|obiecywać|obiecywac)|"
        r"(?:czy )?to (?:naprawdę |naprawde |aż )?(?:takie|tak) trudne|co (?:jest )?z (?:wami|tobą|toba) (?:jest )?nie tak|"
        r"nie wstyd (?:wam|ci)|(?:śpicie|spicie|zasnęliście|zasneliscie|oszaleliście|oszaleliscie|zwariowaliście|"
        r"zwariowaliscie)|(?:powaliło|powalilo|pojebało|pojebalo|popierdoliło|popierdolilo) (?:was|cię|cie)|"
        r"kim (?:ty )?jeste[śs],? (?:żeby|zeby)|(?:wy|ty) (?:tam )?(?:wszyscy )?(?:jesteście |jestescie |jesteś |jestes )?"
        r"(?:głupi|glupi|idioci|debile|ślepi|slepi|nienormalni|idiotami|debilami)",
        # ru
        r"(?:вы|ты) (?:там )?(?:что|чё|че|шо) там|(?:что|чё|че) (?:вы|ты) там|издеваетесь|издеваешься|прикалываетесь|"
        r"сколько можно (?:\w+ )?(?:ждать|терпеть|издеваться|обещать|кормить)|(?:неужели|разве) (?:так |настолько )?(?:сложно|трудно)|"
        r"что с (?:вами|тобой) (?:не так|такое)|кто (?:\w+ )?(?:ты|вы) (?:\w+ )?(?:такой|такая|такие),? чтобы|не стыдно|"
        r"(?:вы|ты) (?:там )?(?:все |вообще |совсем )?(?:тупые|тупой|тупая|идиоты|идиот|дебилы|дебил|дураки|дурак|слепые|"
        r"ненормальн\w+)|(?:охренели|офигели|обалдели|охуели|ахуели|сдурели|спятили|с ума сошли|уснули|оборзели)",
        # uk
        r"(?:ви|ти) (?:там )?(?:що|шо) там|(?:що|шо) (?:ви|ти) там|знущаєтесь|знущаєтеся|знущаєшся|прикалуєтесь|"
        r"скільки можна (?:\w+ )?(?:чекати|терпіти|знущатися|обіцяти|годувати)|(?:невже|хіба) (?:так |настільки )?(?:складно|важко)|"
        r"що з (?:вами|тобою) (?:не так|таке)|хто (?:\w+ )?(?:ти|ви) (?:\w+ )?(?:такий|така|такі),? щоб|не соромно|"
        r"(?:ви|ти) (?:там )?(?:всі |взагалі |зовсім )?(?:тупі|тупий|тупа|ідіоти|ідіот|дебіли|дебіл|дурні|дурень|сліпі|"
        r"ненормальн\w+)|(?:охуїли|офігіли|здуріли|подуріли|з глузду з'їхали|поснули|озвіріли)",
        # de
        r"(?:wollt|willst) (?:ihr|du) mich (?:\w+ )?(?:verarschen|veräppeln|auf den arm nehmen)|"
        r"(?:soll|ist) das (?:\w+ )?ein witz|geht'?s noch|was (?:ist )?(?:denn )?los mit euch|was stimmt (?:denn )?mit euch nicht|"
        r"schämt ihr euch nicht|schämen sie sich nicht|wer bist du(?: denn)?,? dass|wer hat sich das ausgedacht|"
        r"seid ihr (?:alle )?(?:noch )?(?:ganz )?(?:bei trost|wahnsinnig|verrückt|bescheuert|blöd|dumm|irre|blind|taub|"
        r"noch zu retten|eingeschlafen)|wie schwer kann|ist das (?:denn )?(?:wirklich )?so schwer|wer (?:\w+ )?(?:packt|macht) (?:denn )?so",
        # asked of nobody: "кто так пакует?", "вы вообще читаете, что вам пишут?" (unless a choice follows)
        r"(?:кто|хто|kto|who) (?:\w+ )?(?:так|tak|packs like) (?:\w+ )?(?:пакует|упаковывает|пакує|pakuje)|"
        r"(?:вы|ви|wy) (?:вообще|взагалі|w ogóle|w ogole) (?:читаете|читаєте|czytacie)|do (?:you|u) (?:people |guys )?even read",
        # "do you guys even test this?", "Ist das euer Ernst?", "Wer hat sich bitte diesen Jingle ausgedacht",
        # "What's next, charging us for the masks?", "а вы думали, за 1500 рублей ...?", "serio myślisz, że ...?"
        r"do (?:you|u) (?:people|guys) even (?:test|check|try)|ist das (?:euer|dein|ihr) ernst|"
        r"wer hat sich (?:\w+ ){1,3}ausgedacht|who thought (?:\w+ ){1,3}(?:was|is|would be) a good idea|what(?:'s| is) next,|"
        r"(?:а|a) (?:вы|ты|ви|ти) (?:что |що )?(?:думали|ожидали|чекали|очікували)|what did (?:you|u) expect|"
        r"czego (?:się |sie )?(?:spodziewa\w*|oczekiwa\w*)|was (?:hast du|habt ihr|haben sie) (?:denn )?erwartet|"
        r"(?:(?:вы|ты|ви|ти) )?(?:серь[её]зно|серйозно) (?:думаете|думаешь|думаєте|думаєш|считаете|вважаєте|защищаете|"
        r"захищаєте|хочете)|(?:serio|poważnie|powaznie) (?:myślisz|myslisz|myślicie|myslicie|uważasz|uwazasz)|"
        r"(?:do )?(?:you|u) (?:seriously|really|honestly) (?:think|expect|believe)|am i (?:even )?(?:surprised|glad|happy|lucky)|"
        r"how (?:this|that|it) is (?:acceptable|ok|okay|normal|legal)|чи варто взагалі|czy w ogóle warto|стоит ли вообще|"
        r"is it even worth|"
        r"(?:glaubst du|glaubt ihr|glauben sie) (?:das )?(?:ernsthaft|wirklich)",
        # bait in spam: "Who wants to win a FREE ...?", "Кому нужна работа на дому?", "Szukasz pracy zdalnej?"
        r"(?:who wants|who needs|kto chce|komu potrzebn\w*|кто хочет|кому нужн\w*|хто хоче|кому потрібн\w*|"
        r"wer (?:will|möchte|braucht)) "
        r"(?:\w+ ){0,4}(?:free|win|earn\w*|make money|verdien\w*|darmow\w*|wygra\w*|бесплатн\w*|выигра\w*|"
        r"безкоштовн\w*|вигра\w*|gratis|kostenlos\w*|gewinn\w*|zarabia\w*|заработ\w*|заробля\w*|(?:под)?работ\w* на дому|"
        r"роботу з дому|prac\w* zdaln\w*|von zuhause)|"
        r"(?:szukasz|szukacie|ищете|ищешь|шукаєте|шукаєш|looking for|suchst du|sucht ihr) (?:\w+ ){0,2}"
        r"(?:prac\w* zdaln\w*|работ\w* на дому|подработ\w*|роботу з дому|підробіт\w*|(?:a )?(?:side )?job from home|"
        r"work from home|nebenjob|heimarbeit)",
    ]
)
# Bait that opens the clause ("Want to earn 500 a day?", "Chcesz zarabiać z telefonu?"; not "What's the minimum spend if I
# want to get free delivery?")
_BAIT_OPENS = (
    r"(?:(?:do )?(?:you )?want to|wanna|chcesz|chcecie|хочешь|хотите|хочеш|хочете|willst du|wollt ihr) (?:\w+ ){0,4}"
    r"(?:earn\w*|make money|verdien\w*|zarabia\w*|заработ\w*|заробля\w*|заробит\w*)"
)
# The whole clause: "Seriously?", "Серьёзно?!" (but "Это правда?" asks)
_RHETORICAL_ALONE = (
    r"(?:seriously|srsly|really|for real|wtf|serio|poważnie|powaznie|naprawdę|naprawde|серь[её]зно|реально|правда|"
    r"серйозно|справді|ernsthaft|im ernst|echt jetzt|wirklich)"
)
_RHETORICAL_AT_END = "|".join(
    [
        r"are (?:you|u) (?:\w+ )?serious|(?:ты|вы|ти|ви) (?:это |це )?(?:серь[её]зно|серйозно)|(?:wy|ty) (?:tak )?(?:serio|poważnie)",
        r"what am i (?:even )?paying (?:you )?for|wofür (?:be)?zahle ich(?: eigentlich)?|за (?:что|що) (?:я )?(?:вам )?(?:плачу|платимо|платим)|"
        r"za co (?:ja )?(?:wam )?(?:płacę|place|płacimy|placimy)",
        r"(?:сколько|ile|скільки) (?:можно|można|mozna|можна)(?: (?:уже|ещё|еще|już|jeszcze|вже|ще))?",
        r"(?:вы|ты|ви|ти|wy|ty) (?:там |tam )?(?:что|чё|че|шо|що|co)|habt ihr (?:sie )?noch alle(?: tassen im schrank)?|"
        r"schlaft ihr(?: alle)?|wie oft (?:denn )?noch|ile razy (?:jeszcze|mam (?:jeszcze )?(?:dzwonić|pisać|prosić))|"
        r"how many (?:more )?times|kto (?:\w+ )?(?:to )?(?:wymyślił|wymyslil)|кто (?:это )?придумал|хто (?:це )?придумав|"
        r"do (?:you|u) (?:people |guys )?even (?:care|listen)|(?:вы|ви) (?:вообще|взагалі) (?:думаете|думаєте)",
    ]
)
# "склад или курьер?" asks for a choice; "... чи що?", "... or what?" do not
_CHOICE = re.compile(
    r"\s(?:или|либо|чи|або|czy|albo|oder|or)\s(?!(?:що|шо|что|чё|co|was|what|як|как|jak|wie|something|so)[\s?!.…]*$)",
    re.IGNORECASE,
)
_RHETORICAL = re.compile(
    rf"(?<![\w-])(?:{_RHETORICAL_ANYWHERE})(?![\w-])|(?:^|(?<=\s))(?:{_RHETORICAL_AT_END})[\s?!.…]*$"
    rf"|^(?:{_RHETORICAL_ALONE})[\s?!.…]*$|^(?:{_BAIT_OPENS})",
    re.IGNORECASE,
)


# "Pennt ihr da alle oder was?": an "or what?" tag, unless the writer asks what to do ("Muss ich neu starten oder was?")
_OR_WHAT = re.compile(r"(?:^|(?<=\s))(?:or what|oder was|czy co|или что|или чё|чи що)[\s?!.…]*$", re.IGNORECASE)
_ASKS_ADVICE = re.compile(
    r"^(?:(?:what )?(?:do|should|must) i|(?:muss|soll|kann) ich|(?:что )?мне|(?:що )?мені|(?:co )?(?:mam|muszę|musze))"
    r"(?![\w-])",
    re.IGNORECASE,
)


def is_rhetorical(clause: str) -> bool:
    """A clause that only a rant asks ("Вы там что, все уснули?"), not a question for the brand to answer."""
    if _CHOICE.search(clause):
        return False
    return bool(_RHETORICAL.search(clause)) or bool(_OR_WHAT.search(clause) and not _ASKS_ADVICE.match(clause))


# Sentences end at . ! ? … (not a decimal point) or a line break; ❓ and ❔ are question marks.
_SENTENCE = re.compile(r"(?:[^.!?…\n❓❔]|(?<=\d)\.(?=\d))+(?:[.!?…❓❔]+|\n|$)")  # "£23.40" ends nothing
# Emoji (pictographs, dingbats, their modifiers and joiners; ❓❔❕❗ are punctuation): in comments they end sentences as
# often as a full stop does ("Обожаю ваш клуб 💪💪 В новом тоже будет бассейн?").
_EMOJI = "\U0001f000-\U0001faff\u2600-\u2752\u2756\u2758-\u27bf\u2b00-\u2bff\ufe0f\u200d"  # not ❓❔❕❗
# A run of emoji ends a sentence where a capital follows it, as a full stop would, or a question that ends in "?"
# ("love it 😍 any idea when …?"), or one that only a question opens ("😍 czy jest w M"); not where the sentence
# goes on ("can I order 🍕 for ten people?", "Polecam ✅ gdzie indziej drożej").
_EMOJI_BREAK = re.compile(
    rf"(?<=[{_EMOJI}])\s+(?=[A-ZÄÖÜĄĆĘŁŃÓŚŹŻА-ЯЁІЇЄҐ]|(?i:(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})[^?]*\?"
    rf"|(?i:{_QUESTION_ONLY}|(?:{_ASKING}){_W}))"
)
# In a sentence that ends in "?", a run of emoji before any word: a break where the text before it is a remark.
_EMOJI_ASK = re.compile(rf"(?<=[{_EMOJI}])\s++(?=\w)")
# Cut points: "and"/"i"/"und"/"и"/"і" before any interrogative; comma, dash or colon before a strong one.
# One group: split() keeps what was cut at (a colon or dash announces questions).
_AND = r"(?:and|und|i|oraz|a|и|а|і|й|та)"
_NUMBERED = r"(?:\(?\d{1,2}[).]\s+|[•▪]\s*)"  # "Два вопроса: 1) до скольки ...? 2) можно ли ...?"
_ENUM = rf"{_NUMBERED}?"
_AND_CUT = rf"(?:and|und|oraz|a|и|а|і|й|та|i(?!\s++{_VERB_FIRST_EN_ASKS}))"  # "i" before "were you" is "If I were you"
_CUT = re.compile(
    rf"((?:,\s*(?:{_AND_CUT}|ale|але|но|aber|but)\s+|(?<!\s)\s+{_AND_CUT}\s+)(?=(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST})"
    rf"|(?:,|\s[-–—]|:)\s*{_ENUM}(?!(?:{_RELATIVE}){_W})(?=(?:{_STRONG}){_W}|{_VERB_FIRST_EN_ASKS}|{_LI}|{_ANYONE})"
    rf"|(?:,|:)\s*{_ENUM}(?={_VERB_FIRST_DE_COMMON})"  # "liegt das an der Reparatur, kann man das fixen"
    rf"|,\s*(?:so(?!\s+(?:did|do|does|am|was|were|have|has|had)\s+(?:i|we)\b)|but)\s+(?={_VERB_FIRST_EN_ASKS})"  # "..., so
    # could you tell me how to send it back" (not "..., so did I")
    rf"|:\s*{_ENUM}(?=(?:{_WEAK}){_W})"
    rf"|(?<!\s)\s+\(?\d{{1,2}}\)\s+(?=(?:{_STRONG}|{_WEAK}){_W}|{_VERB_FIRST}))",  # "1) when do you open 2) do you"
    re.IGNORECASE,
)

# "Krem ma SPF czy nie", "крем має SPF чи ні": an either-or tag makes a question without "?" too.
_OR_NOT = re.compile(
    r"^[^,]*(?<!\byes)(?<!\btak)(?<!\bда)(?<!\bтак)(?<!\bja)\s(?:or not|czy nie|или нет|чи ні|oder nicht)\W*"
    r"(?:,\s*(?:bo|бо|потому что|because|cause|weil|denn)\s.*)?$",
    re.IGNORECASE,
)
# "known issue or did i get a dodgy batch", "есть в наличии или только под заказ", "oddali kasę czy dalej czekasz": an
# alternative with the verb before its subject, or one that narrows ("or only", "czy dalej"), asks without "?" too.
_OR_ASKS = re.compile(
    r"\s(?:or (?:(?:do|did) (?!it\b)|does |should (?!i say\b)|can |will |am |shall )(?:i|you|u|we|they|he|she|it)"
    r"|or (?:is|are) (?:it|there|they|you|this|that)"  # not "... or was it Monday": a correction
    r"|(?:or|oder|czy|чи|или) (?:only|tylko|только|тільки|лише|still|dalej|nadal|wciąż|ciągle|до сих пор|досі|"
    r"immer noch))(?![\w-])",  # not "или ещё дольше", "oder noch länger"
    re.IGNORECASE,
)
# "If I cancel now do I get the rest back", "jeśli zamówię dziś, to czy dojdzie na piątek": a condition, then the
# question; not a counterfactual ("If I had a pound for every delay would I be rich") or "jeśli chodzi o to, czy ...".
_IF_ASKS = re.compile(
    r"^(?:if\s\S+\s[^,?]*?(?<=\S)\s(?:do|does|did|can|will|should|shall|is|are|am)\s+(?:i|you|u|we|they|it|he|she)\s+"
    r"(?!(?:would|will|can|could|should|must|may|might|shall|do|does|did|is|are|was|were|has|have|had|even)\b)[a-z]"
    r"|(?:jeśli|jesli|jeżeli|jezeli|gdy)\s(?!chodzi\b)[^?]*?\sto\s+czy\s(?!ja wiem\b)"
    r"|якщо\s(?!йдеться\b)[^?]*?\sто\s+чи\s)",
    re.IGNORECASE,
)
# "Where is my order?!" asks, for all its "?!" ("How hard is it to pack a bottle?!", "Where are my manners?!" do not)
_WHERE_MINE = re.compile(
    r"^(?:where(?:\s+the\s+(?:hell|fuck|heck))?(?:'s|\s+is|\s+are)|wo\s+(?:zum teufel\s+)?(?:ist|sind|bleibt)|где|де|"
    r"gdzie(?:\s+jest|\s+są|\s+sa)?)\s+(?:\w+\s+){0,3}?"
    r"(?:my|mein\w*|мой|моя|мои|моё|мое|мій|моє|мої|moja|moje|mój|moj|moi)\s+(?:\w+\s+)?"
    r"(?:order|parcel|package|refund|money|delivery|items?|card|payment|points|replacement|ticket|booking|invoice|"
    r"zamówienie|zamowienie|paczka|paczki|przesyłka|przesylka|zwrot|pieniądze|pieniadze|kasa|karta|dostawa|bilet|"
    r"заказ|посылка|возврат|деньги|доставка|карта|бонусы|билет|замовлення|посилка|повернення|гроші|картка|квиток|"
    r"bestellung|paket|sendung|erstattung|geld|lieferung|karte|rückerstattung|gutschrift|buchung|rechnung)(?![\w-])",
    re.IGNORECASE,
)
# "So do I.", "Neither can we": agreement, no question
_SO_DO_I = re.compile(
    r"^(?:so|neither|nor)\s+(?:do|does|did|am|is|are|was|were|can|could|will|would|should|have|has|had)\s+"
    r"(?:i|we|you|they|he|she|it|mine|ours)\W*$",
    re.IGNORECASE,
)
# "Кто покупает матрас за 80 тысяч, у того мозгов нет", "Wer günstiger sucht, schaut mal bei ...": a "whoever" clause
# and its main clause, no question; but "Wer bezahlt den Rückversand, der Kunde oder ihr" and "Кто отвечает за
# возвраты — тот же отдел?" ask (a German question puts its verb right after "wer").
_WHOEVER = re.compile(
    r"^(?:kto|кто|хто|wer(?!\s+(?:ist|sind|war|kann|hilft|weiß|weiss|(?!(?:nicht|zuerst|jetzt|selbst|erst|meist|oft)\b)"
    r"\w+t)(?![\w-])))\s[^,?—–]*?(?:,|\s[—–-])\s*(?:у (?:того|тех|них|нього)|тот|те|того|тому|тем|той|тим|ті|"
    r"ten|ci|tego|temu|tym|niech|zapraszam|polecam|der|dem|den|ist|hat|soll|sollte|muss|kann|braucht|schaut|"
    r"bekommt|zahlt|wird)(?!\s+(?:же|sam|sama|same|самий|сама|gleiche))(?![\w-])",
    re.IGNORECASE,
)


def _or_asks(clause: str) -> bool:
    return bool(_OR_ASKS.search(clause)) and not _EITHER_OR.search(clause) and not _DOUBT_LEAD.search(clause)


def _whoever(clause: str) -> bool:
    """ "Кто опоздал, тот не успел"; but "Кто заказывал этот диван, тот доволен или нет" asks for a choice."""
    return bool(_WHOEVER.match(clause)) and not _CHOICE.search(clause) and not _OR_NOT.search(clause)


# Not knowing, in both doubt readings below ("nie wiem", "не уверена", "not sure"), after an optional subject
_SUBJECT = r"(?:(?:я|ja|i|ich|мы|ми|my|we|wir) )?"
_NOT_SURE = r"nie wiem|nie jestem pewn\w*|не знаю|не уверен\w*|не впевнен\w*|(?:i'm |i am )?not sure|keine ahnung"
# "Nie wiem, czy tylko ja tak mam": a doubt before the alternative or the condition, no question
_DOUBT_LEAD = re.compile(
    rf"^{_SUBJECT}(?:{_NOT_SURE}|nie pamiętam|nie pamietam|не помню|не пам'ятаю|(?:do not|don'?t) know|can'?t remember|"
    r"wei(?:ß|ss) (?:ich )?nicht|nieważne|niewazne|niezależnie|niezaleznie|bez względu|obojętnie|"
    r"wszystko jedno|неважно|не важно|неважливо|egal|no matter)(?![\w-])"
    # ... or after it ("Płaciłam kartą czy tylko blikiem, już nie pamiętam")
    r"|,\s*(?:(?:już|juz|уже|вже|now|jetzt) )?(?:nie pamiętam|nie pamietam|не помню|не пам'ятаю|(?:i )?can'?t remember|"
    r"(?:i )?don'?t remember|wei(?:ß|ss) (?:ich )?nicht mehr)",
    re.IGNORECASE,
)
# "either ... or did I ...": a statement of two possibilities
_EITHER_OR = re.compile(r"(?<![\w-])(?:either|entweder|либо)(?![\w-])", re.IGNORECASE)
# A question without "?" ends where a reason ("..., bo nie mogę znaleźć", "... а то на карте не указано") or a remark of
# three words or more follows it ("чи є доставка в Житомир, хочу замовити на суботу"); not at a clause that goes on
# with the question (a condition, a relative, an alternative, a negation: "..., если возврат через курьера").
_GOES_ON = (
    rf"{_RELATIVE}|jeśli|jesli|jeżeli|jezeli|gdy|zanim|żeby|zeby|aby|albo|lub|czy|nie|если|когда|чтобы|или|либо|не|"
    r"якщо|коли|щоб|або|чи|ні|if|when|whether|unless|before|so that|or|not|either|wenn|falls|bevor|damit|oder|nicht|"
    r"np|e\.g|z\.b|например|наприклад|a nie|а не|а також|а также|also|и|і|та|i|a|and|und|że|ze|iż|что|що|that|dass|"
    r"even|nawet|mimo|chociaż|chociaz|choć|choc|skoro|хотя|даже|навіть|хоча|auch|obwohl|although|though|preferably|"
    r"ewentualnie|najlepiej|желательно|бажано|am liebsten|vorzugsweise|ideally|idealnie"
)
_TAIL = re.compile(
    rf",\s++(?!(?:{_GOES_ON})(?![\w-]))(?=\S++\s+\S++\s+\S)"  # a remark of three words or more ...
    r"(?![^.!?]*\s(?:albo|lub|czy|или|либо|або|чи|oder|or|i|и|і|та|and|und|oraz)\s)"  # ... that lists nothing
    r"|(?<!\s)\s++(?=(?:bo|бо|а то|потому что|because(?!\s+of)|weil)\s)",  # a reason ("denn" is a filler in questions)
    re.IGNORECASE,
)
# ... but not where the next words ask again ("..., od ilu dni wcześniej trzeba to zrobić")
_ASKS_ON = re.compile(rf"(?:\S+\s+){{0,2}}(?:{_STRONG}|{_WEAK}|ilu){_W}", re.IGNORECASE)
# "Czy A, czy B?", "Чи A, чи B?", "Ob A oder B?": the alternatives of one question
_AND_SEP = re.compile(rf"^,?\s*{_AND}\s*$", re.IGNORECASE)  # a cut at "and", not at a comma or colon
_EITHER = re.compile(r"^(?:czy|чи|ob|whether)(?![\w-])", re.IGNORECASE)
_OR = re.compile(r"^(?:czy|чи|или|або|albo|oder|or)(?![\w-])", re.IGNORECASE)
_ASKING_RE = re.compile(rf"^(?:{_ASKING})(?![\w-])", re.IGNORECASE)
_ASKING_IF_RE = re.compile(
    rf"^(?:{_ASKING})[\s,]+(?:(?:if|when|where|which|who|{_STRONG}|{_WEAK}){_W}|{_QUESTION_ONLY})", re.IGNORECASE
)
_QUESTION_ONLY_RE = re.compile(rf"^(?:{_QUESTION_ONLY})", re.IGNORECASE)
# An interrogative followed by a first-person modal, "now" and an infinitive, or a verb before its subject is asked where
# it ends a comment, "?" or not ("..., gdzie mogę dopisać NIP", "..., где теперь посмотреть статус", "..., when will it
# arrive"); a relative or temporal clause is not ("..., gdzie byłam wczoraj", "знаю, где покупать", "..., когда есть
# скидки", "..., wann ich Zeit habe", "..., gdzie można płacić kartą").
_NOW = (
    r"(?:teraz|jeszcze|теперь|сейчас|ещё|еще|мне|тепер|зараз|ще|мені)\s+"  # "где теперь посмотреть": not "где покупать"
)
_ASKS_HOW = re.compile(
    rf"^(?:(?:gdzie|kiedy|ile|skąd|skad|dokąd|dokad|od kiedy|do kiedy)\s+(?:(?:\w+\s+)?(?:mogę|moge|muszę|musze|mam|"
    rf"kosztuje|kosztują|kosztuja|trwa)|{_NOW}\w+(?:ć|[aeiyu]c))|(?:где|когда|сколько|куда|откуда)\s+(?:(?:\w+\s+)?"
    rf"(?:могу|стоит|стоят)|{_NOW}\w{{2,}}(?:ть|ться|ти|тись|чь))|(?:де|коли|скільки|куди|звідки)\s+(?:(?:\w+\s+)?"
    rf"(?:можу|коштує|коштують)|{_NOW}\w{{2,}}(?:ти|тися))|"
    r"(?:when|where)\s+(?:will|can|do|does|should|would)\s+(?:i|we|it|my|the|you|they|this|that)|"
    r"who\s+(?:do|should|can)\s+(?:i|we)|"
    r"(?:wo|wann|wohin|woher)\s+(?:kann|könnt|können|muss|soll|bekomme|bekommt|kommt|ist|sind|gibt))(?![\w-])",
    re.IGNORECASE,
)
# "Nie wiem, czy ...", "Sprawdzę jutro, czy ...", "Я спросила у мамы, придёт ли ...", "Mal sehen, ob ...": a doubt, a
# plan to find out or someone else asked, not a question for the brand (the last part of the clause before).
_DOUBT = re.compile(
    rf"(?:^|,\s*){_SUBJECT}(?:{_NOT_SURE}|zobaczymy|zobaczę|zobacze|sprawdzę|sprawdze|sprawdzimy|zapytam|"
    r"zapytałam|zapytalam|zapytałem|zapytalem|zapytała|zapytala|zapytał|zapytal|spytała|spytala|spytał|spytal|посмотрим|проверю|спрошу|спросил\w*|узнаю|"
    r"побачимо|перевірю|спитаю|спитал\w*|спитав|дізнаюся|дізнаюсь|(?:i )?(?:do not|don'?t) know|"
    r"we'?ll see|let'?s see|i'?ll (?:check|ask|see)|i asked|(?:ich )?wei(?:ß|ss) nicht|"
    r"mal (?:sehen|schauen|gucken)|wir werden sehen|ich (?:schaue|schau|frage|fragte|prüfe)(?! mich))"
    r"[^,]*$",
    re.IGNORECASE,
)
# A polite lead that only opens the question after it ("Подскажите, придёт ли ...", "Скажіть, будь ласка, коли ...").
_POLITE = re.compile(
    r"^(?:подскажите|подскажи|(?:не )?подскажете|скажите|скажи|підкажіть|підкажи|(?:не )?підкажете|скажіть|(?:können|könnten|koennen) sie mir sagen|"
    r"(?:kannst du|könnt ihr|koennt ihr) mir sagen|(?:can|could) you tell me|(?:możecie|mozecie|możesz|mozesz) mi "
    r"powiedzie[ćc])(?:,?\s*(?:пожалуйста|будь ласка|bitte|please|proszę|prosze))?\W*$",
    re.IGNORECASE,
)
# ... or a question that asks to be told ("Könnt ihr mir sagen, wann ...", "can you check, when ...")
_TELL_ME = re.compile(
    rf"^(?:{_VERB_FIRST}|{_STRONG}).*(?<![\w-])(?:sagen|nachschauen|nachsehen|prüfen|checken|tell me|tell us|let me know|"
    r"check|powiedzie[ćc]|sprawdzi[ćc]|сказать|проверить|подсказать|посмотреть|сказати|підказати|перевірити|"
    r"подивитися)(?:\s+(?:bitte|please|proszę|prosze|пожалуйста|будь ласка))?\W*$",
    re.IGNORECASE,
)
_ANNOUNCE = re.compile(
    r"(?<![\w-])(?:questions?|quick one|(?:two|three|2|3) things|pytani[ae]|pytań|pytan|dwie rzeczy|вопрос\w*|питанн\w*|"
    r"fragen?|zwei dinge)(?![\w-])",
    re.IGNORECASE,
)


# Handles that open a clause address someone ("@jess_lifts which size did you get?"): not part of the question.
_ADDRESS = re.compile(r"^(?:@[\w.]+[,:]?\s*)+")
_EDGE_EMOJI = re.compile(rf"^[{_EMOJI}\s]+|(?<![{_EMOJI}\s])[{_EMOJI}\s]+$")  # a run is tried once, from its start
_ENUM_LEAD = re.compile(rf"^{_NUMBERED}")  # a numbered or bulleted question: "2) можно ли ...?"


def _unaddressed(clause: str) -> str:
    """Without the handles and the greeting that open it ("@ana hi, ...", "Hi @ana, ...")."""
    return _ADDRESS.sub("", _GREETING.sub("", _ADDRESS.sub("", clause), count=1))


def _body(clause: str) -> str:
    return _LEAD.sub("", _unaddressed(clause.strip()))


def _clean(clause: str) -> str:
    """Trim punctuation (and a closing full stop), emoji at either end, and a leading handle or greeting ("@ana hi,
    do you ...? 🙏" -> "do you ...?"); stays a span of the text."""
    clause = _EDGE_EMOJI.sub("", clause.strip().strip(",;:-–— ")).strip().rstrip(".…").rstrip()
    rest = _ENUM_LEAD.sub("", _unaddressed(clause)).strip()
    return rest if any(ch.isalpha() for ch in rest) else clause


def _sentences(text: str) -> Iterator[str]:
    """Sentences, with a run of emoji as a full stop where _EMOJI_BREAK says so, or before any word of a sentence that
    ends in "?" after a remark of three words or more ("Boże jaka piękna ta sukienka 😍😍 będzie też w 44?"); but the
    emoji go on a question that is still open ("Gibt es die 👖 Hose auch in 34?", "Can I pay with 💳 Visa?")."""
    for match in _SENTENCE.finditer(text):
        sentence, start = match.group(0), 0
        asks = sentence.rstrip().endswith(("?", "❓", "❔"))
        cuts = _EMOJI_ASK.finditer(sentence) if asks else _EMOJI_BREAK.finditer(sentence)
        for cut in cuts:
            before = sentence[start : cut.start()]
            if _ANY_RE.match(_body(before)) and not _ANY_RE.match(sentence[cut.end() :]):
                continue
            if asks and len(_body(before).split()) < 3 and not _EMOJI_BREAK.match(sentence, cut.start()):
                continue  # "So 🍕 tonight?": only a remark before the emoji starts a question after them
            yield before
            start = cut.end()
        yield sentence[start:]


def _unasked(clause: str) -> str:
    """A question without "?" up to the reason or remark that follows it; not at the comma of a polite lead or where
    the next words ask again ("Не подскажете, до скольки ..., а то на сайте ...": the cut is at "а то")."""
    for tail in _TAIL.finditer(clause):
        if len(clause[: tail.start()].split()) < 2 or _ASKS_ON.match(clause[tail.end() :]):
            continue
        end = tail.start()
        while end and (clause[end - 1].isspace() or clause[end - 1] in ",;:-–—"):  # a tab or a no-break space too
            end -= 1
        return clause[:end]
    return clause


# Ukrainian typed on a Russian keyboard ("скiльки", "вiдповiдь"), or a Latin letter slipped into a Cyrillic word: the
# rules read each such word with its Cyrillic look-alikes, one letter for one, so every span maps back unchanged.
_LOOKALIKE = str.maketrans("aceiopxyABCEHIKMOPTX\u00ef", "асеіорхуАВСЕНІКМОРТХї")
_CYRILLIC = re.compile(r"[а-яёіїєґА-ЯЁІЇЄҐ]")
_MIXED = re.compile(r"[а-яёіїєґА-ЯЁІЇЄҐ][aceiopxyABCEHIKMOPTXï]|[aceiopxyABCEHIKMOPTXï][а-яёіїєґА-ЯЁІЇЄҐ]")


# A dot inside a handle or before a domain ending ("@sarah.m", "amazon.de") ends no sentence: read as "_"
_HANDLE = re.compile(r"@[\w.]*\w")
_DOMAIN_DOT = re.compile(r"(?<=\w)\.(?=(?:pl|com|de|ru|ua|uk|eu|net|org|shop|store|info|biz|ch)\b)", re.IGNORECASE)


def _readable(text: str) -> str:
    """``text`` as the rules read it: the same length, letter for letter (Cyrillic look-alikes, dots of handles)."""
    read = _cyrillic(text)
    if "." in read:
        if "@" in read:
            read = _HANDLE.sub(lambda m: m[0].replace(".", "_"), read)
        read = _DOMAIN_DOT.sub("_", read)
    return read


def _cyrillic(text: str) -> str:
    """``text`` with the Latin look-alikes inside Cyrillic words made Cyrillic; the same length, letter for letter."""
    if not _MIXED.search(text):  # most comments: nothing to read otherwise
        return text
    return re.sub(r"\w++", lambda m: m[0].translate(_LOOKALIKE) if _CYRILLIC.search(m[0]) else m[0], text)


def extract_questions(text: str) -> list[str]:
    """The questions of ``text`` in order, each an exact span of the text (trimmed)."""
    read = _readable(text)
    if read == text:
        return _extract(text)
    spans, start = [], 0
    for span in _extract(read):
        at = read.index(span, start)
        spans.append(text[at : at + len(span)])
        start = at + len(span)
    return spans


def _extract(text: str) -> list[str]:
    found: list[str] = []
    for sentence in _sentences(text):
        sentence = sentence.strip()
        if not sentence or not any(ch.isalpha() for ch in sentence):
            continue
        marks = sentence.replace("❓", "?").replace("❔", "?")
        rhetorical = ("?!" in marks or "!?" in marks) and not _WHERE_MINE.match(_body(sentence))
        asked = "?" in marks and not rhetorical
        exclaimed = marks.rstrip().endswith("!") and not asked
        if rhetorical or exclaimed:
            continue
        pieces = _CUT.split(sentence)  # clause, separator, clause, ...
        while len(pieces) > 2 and not any(ch.isalpha() for ch in _body(pieces[0])):
            pieces = [pieces[0] + pieces[1] + pieces[2], *pieces[3:]]  # "Здравствуйте, подскажите, ...": a greeting
        if len(pieces) > 2 and (_POLITE.match(_body(pieces[0])) or _TELL_ME.match(_body(pieces[0]))):
            # "Подскажите, придёт ли ...", "Könnt ihr mal nachschauen, wo das Paket hängt?": one question
            pieces = [pieces[0] + pieces[1] + pieces[2], *pieces[3:]]
        if (
            len(pieces) > 2 and pieces[-2].strip() == "," and _EITHER.match(_body(pieces[-3])) and _OR.match(pieces[-1])
        ):  # "Czy da się to naprawić, czy zostaje tylko wymiana?", "..., чи A, чи B": one choice, at the end
            pieces = [*pieces[:-3], pieces[-3] + pieces[-2] + pieces[-1]]
        clauses = [(sep, _clean(c)) for sep, c in zip(["", *pieces[1::2]], pieces[::2], strict=True)]
        clauses = [(sep, c) for sep, c in clauses if any(ch.isalpha() for ch in _body(c))]  # "halo, dlaczego ..."
        first_is_question = False
        for i, (sep, clause) in enumerate(clauses):
            body = _body(clause)
            if is_rhetorical(body):
                continue
            last = i == len(clauses) - 1
            # a colon or dash after "a question" announces them: "Mam pytanie – kiedy przyjdzie, czy jest płatna"
            before = _body(clauses[i - 1][1]) if i else ""
            mark = sep.strip()[:1]  # ":", a dash, or a number: "two things 1) when ... 2) do you ..."
            announced = not first_is_question and (
                ((mark in (":", "-", "–", "—", "(") or mark.isdigit()) and bool(_ANNOUNCE.search(before)))
                or bool(i and _ASKING_RE.match(f"{before}{sep}{body}"))  # "Хотела уточнить, вернутся ли деньги ..."
            )
            if i == 0 or announced:
                joined = not last and any(ch.isalpha() for ch in clauses[i + 1][0])  # "What is it for and how ...?"
                first_is_question = (
                    bool(_STRONG_RE.match(body) or _OR_NOT.search(body) or _ASKING_IF_RE.match(body))
                    or bool(not asked and ((_IF_ASKS.match(body) and not _DOUBT_LEAD.search(body)) or _or_asks(body)))
                    or (asked and last)
                    or bool(asked and (announced or joined) and _ANY_RE.match(body))
                )
                is_question = first_is_question
            else:
                # A later clause counts only inside a question ("Chuj wie, gdzie ..." is no question), or as the last
                # clause that only a question opens: "mam 168 cm, czy wersja maxi nie będzie za długa", "ordered it
                # last night, can i still change it"; not a tag ("..., are they 🙄"). "Last" includes one that another
                # question follows after "and" ("..., so could you tell me how to send it back and whether ...").
                ends = last or bool(_AND_SEP.match(clauses[i + 1][0]) and _STRONG_RE.match(_body(clauses[i + 1][1])))
                is_question = (
                    (asked and last)
                    or bool((asked or first_is_question) and _ANY_RE.match(body))
                    or bool(
                        ends
                        and (_QUESTION_ONLY_RE.match(body) or _ASKS_HOW.match(body) or _or_asks(body))
                        and len(body.split()) > 2
                        and not _DOUBT.search(before)
                    )
                )
            if is_question and not (not asked and (_whoever(body) or _SO_DO_I.match(_unaddressed(clause)))):
                found.append(clause if asked else _unasked(clause))
    return found
