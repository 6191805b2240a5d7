"""The triage policy on hand-set model outputs: action precedence, priority, deadlines, reasons."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.policy import Crisis, PolicyError, decide, load_policy, parse_policy, parse_policy_set
from service.predictor import Prediction
from service.schemas import CommentIn

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def pred(sentiment="neutral", p=0.7, toxic=0.05, complaint=0.05, question=0.05) -> Prediction:
    rest = (1 - p) / 2
    probs = {k: (p if k == sentiment else rest) for k in ("negative", "neutral", "positive")}
    return Prediction(
        language="en",
        sentiment=sentiment,
        toxic=toxic >= 0.5,
        complaint=complaint >= 0.5,
        question=question >= 0.5,
        p_sentiment=probs,
        p_toxic=toxic,
        p_complaint=complaint,
        p_question=question,
    )


def comment(text="text", **kw) -> CommentIn:
    return CommentIn(id="c", text=text, **kw)


@pytest.fixture(scope="module")
def policy():
    return load_policy()


def test_public_complaint_under_paid_ad_moves_to_private(policy):
    d = decide(comment(is_paid=True, ad_id="ad-1"), pred("negative", 0.85, complaint=0.77), [], NOW, policy)
    assert d.action == "move_to_private"
    assert d.priority in ("high", "critical") and d.respond_within_minutes <= 30
    assert "complaint (0.77) in a public comment under a paid ad" in d.reasons[0]


def test_same_complaint_in_a_dm_is_resolved_there(policy):
    d = decide(comment(channel="dm"), pred("negative", 0.85, complaint=0.77), [], NOW, policy)
    assert d.action == "apologize_and_resolve"


def test_toxic_is_hidden_before_anything_else_but_a_crisis(policy):
    p = pred("negative", 0.9, toxic=0.91, complaint=0.8, question=0.9)
    assert decide(comment(), p, ["why?"], NOW, policy).action == "hide_and_review"
    crisis = Crisis(scope="ad ad-1", description="12 negative comments in 15 minutes")
    escalated = decide(comment(ad_id="ad-1"), p, [], NOW, policy, crisis=crisis)
    assert escalated.action == "escalate_crisis" and escalated.priority == "critical"
    assert escalated.priority_score == 100 and escalated.respond_within_minutes == 15


def test_spam_link_is_hidden(policy):
    text = "Earn $500 per day from home!!! check my profile https://get-rich.xyz/now"
    d = decide(comment(text), pred("positive", 0.8), [], NOW, policy)
    assert d.action == "hide_and_review" and "spam" in d.reasons[0]


def test_bait_questions_in_spam_are_no_questions(policy):
    text = "Want to earn $500 per day from home? check my profile https://get-rich.xyz/now"
    bait = decide(comment(text), pred(question=0.7), ["Want to earn $500 per day from home?"], NOW, policy)
    assert bait.action == "hide_and_review" and not bait.question and bait.questions == []
    assert not any("question" in r for r in bait.reasons)
    plain = decide(comment(text), pred(question=0.05), [], NOW, policy)
    assert bait.priority_score == plain.priority_score  # no question boost either


def test_a_question_in_toxic_content_is_hidden_not_answered(policy):
    asked = ["Where the fuck is my parcel"]
    d = decide(comment(asked[0]), pred("negative", 0.9, toxic=0.9, question=0.8), asked, NOW, policy)
    assert d.action == "hide_and_review" and d.question and d.questions == asked
    said = " ".join(d.reasons)
    assert "1 question asked" in said and "in hidden content: not answered" in said and "answer it fast" not in said
    order = ["answer_question", *(a for a in policy.precedence if a != "answer_question")]
    first = parse_policy({**policy.model_dump(mode="json"), "precedence": order})
    answered = decide(comment(asked[0]), pred("negative", 0.9, toxic=0.9, question=0.8), asked, NOW, first)
    assert answered.action == "answer_question" and any("answer it fast" in r for r in answered.reasons)


def test_questions_are_answered_fast_and_praise_is_thanked(policy):
    q = decide(comment(), pred(question=0.9), ["When?", "How much?"], NOW, policy)
    assert q.action == "answer_question" and q.respond_within_minutes <= 60
    assert "2 questions asked" in " ".join(q.reasons)
    thanks = decide(comment(), pred("positive", 0.9), [], NOW, policy)
    assert thanks.action == "thank_and_engage" and thanks.priority == "low"
    calm = decide(comment(), pred("neutral", 0.9), [], NOW, policy)
    assert calm.action == "monitor" and calm.respond_within_minutes is None and calm.respond_by is None


def test_context_raises_priority_and_deadline_never_exceeds_60(policy):
    base = decide(comment(), pred(question=0.9), ["?"], NOW, policy)
    vip = decide(
        comment(author={"is_vip": True, "followers": 50_000, "is_customer": True}, is_paid=True),
        pred(question=0.9),
        ["?"],
        NOW,
        policy,
    )
    assert vip.priority_score > base.priority_score
    assert any("large audience (50,000 followers)" in r for r in vip.reasons)
    waited = decide(comment(created_at=NOW - timedelta(minutes=90)), pred(question=0.9), ["?"], NOW, policy)
    assert waited.priority_score > base.priority_score
    assert waited.respond_by < NOW and any(r.startswith("overdue") for r in waited.reasons)
    for d in (base, vip, waited):
        assert d.respond_within_minutes <= 60
        assert d.respond_by == (d.respond_by - timedelta(minutes=d.respond_within_minutes)) + timedelta(
            minutes=d.respond_within_minutes
        )


def test_heated_thread_and_waiting_customer(policy):
    parent = pred("negative", 0.9, toxic=0.8)
    heated = decide(comment(channel="reply"), pred("neutral"), [], NOW, policy, parent=parent)
    calm = decide(comment(channel="reply"), pred("neutral"), [], NOW, policy)
    assert heated.priority_score > calm.priority_score and any("heated thread" in r for r in heated.reasons)
    follow = decide(comment(channel="dm", author={"is_customer": True}), pred("neutral"), [], NOW, policy)
    assert follow.action == "follow_up"


def test_a_comment_stamped_in_the_future_is_due_within_60_minutes_of_now(policy):
    for ahead in (timedelta(hours=3), datetime(9999, 12, 31, 23, 50, tzinfo=UTC) - NOW):
        d = decide(comment(created_at=NOW + ahead), pred("negative", 0.9, complaint=0.9), [], NOW, policy)
        assert d.respond_by is not None and NOW < d.respond_by <= NOW + timedelta(minutes=60)


def test_a_handle_that_addresses_someone_is_no_spam_signal(policy):
    asked = ["where is my parcel?"]
    tagged = decide(comment("@acme where is my parcel? Please DM me"), pred(question=0.8), asked, NOW, policy)
    assert tagged.action == "answer_question" and tagged.questions == asked
    contact = decide(comment("Free crypto signals, DM me or write to @cryptoking_pl"), pred(), [], NOW, policy)
    assert contact.action == "hide_and_review"
    bait = decide(comment("Who wants to work from home? DM me"), pred(question=0.8), ["Who wants"], NOW, policy)
    assert bait.action == "hide_and_review" and bait.questions == []  # bait is phrased as a question


def test_reasons_agree_with_hiding(policy):
    rant = pred("negative", 0.9, toxic=0.9, complaint=0.9)
    for channel in ("comment", "dm"):
        d = decide(comment(channel=channel, created_at=NOW - timedelta(hours=2)), rant, [], NOW, policy)
        said = " ".join(d.reasons)
        assert d.action == "hide_and_review" and "in hidden content" in said, said
        assert "private messages" not in said and "apologise" not in said and "hiding it was due" in said, said


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Where the fuck is my refund? Cancelled on the 2nd and still nothing.", "fuck"),
        ("zajebiste te buty, będą jeszcze w 38?", "zajebiste"),
        ("охуєнний концерт був, коли наступний?", "охуєнний"),
        ("Опять списали деньги дважды, бля", "бля"),
        ("Diese Scheiß-App stürzt ständig ab", "Scheiß"),
        ("Нихуя не работает ваше приложение", "Нихуя"),
        ("Йобана доставка знову запізнилась", "Йобана"),
        ("Verfickte App, schon wieder abgestürzt", "Verfickte"),
    ],
)
def test_swearing_the_toxic_head_missed_is_hidden_all_the_same(policy, text, word):
    """The labelling guidelines call profanity toxic wherever it stands, in a complaint, a question or praise."""
    d = decide(comment(text), pred("negative", 0.8, toxic=0.3, complaint=0.8, question=0.8), [text], NOW, policy)
    assert d.toxic and d.action == "hide_and_review"
    assert d.reasons[0] == f'profanity ("{word}") in a public comment: hide it and review, do not answer'
    missed = pred("negative", 0.8, toxic=0.3, complaint=0.8)
    quiet, plain = decide(comment(text), missed, [], NOW, policy), decide(comment("x"), missed, [], NOW, policy)
    assert quiet.priority_score - plain.priority_score == policy.boosts.toxic
    off = policy.model_copy(update={"profanity": policy.profanity.model_copy(update={"patterns": []})})
    assert not decide(comment(text), pred("negative", 0.8, toxic=0.3), [], NOW, off).toxic


@pytest.mark.parametrize(
    "text",
    [
        "Бальзам у бляшаній баночці — супер",
        "У нас сука лабрадора, 28 кг, можна в салон?",
        "Is the wedding gown available in ivory?",
        "Fickle weather, but the jacket held up",
        "Ships to Scunthorpe?",
        "Страхует ли ваша доставка хрупкие вещи?",
        "Chcę schudnąć, macie coś bez cukru?",
        "Do you have shitake ramen?",
        "Our bitch is due next week, which puppy food do you recommend?",
        "Доставка в Херсон є?",
    ],
)
def test_words_that_only_look_like_swearing_are_not(policy, text):
    d = decide(comment(text), pred("neutral", toxic=0.1), [], NOW, policy)
    assert not d.toxic and d.action != "hide_and_review" and not any("profanity" in r for r in d.reasons)


def test_the_toxic_heads_own_call_gives_the_toxic_reason_not_a_second_one(policy):
    d = decide(comment("fuck this shop"), pred("negative", 0.9, toxic=0.95), [], NOW, policy)
    assert d.toxic and d.reasons[0].startswith("toxic content (0.95)")
    assert not any("profanity" in r for r in d.reasons)


def test_only_a_reply_sits_in_a_thread_and_only_a_customer_is_called_one(policy):
    parent = pred("negative", 0.9, toxic=0.9)
    dm = decide(comment(channel="dm"), pred("neutral"), [], NOW, policy, parent=parent)
    assert not any("heated thread" in r for r in dm.reasons)
    waited = decide(comment(channel="dm", created_at=NOW - timedelta(hours=2)), pred("neutral"), [], NOW, policy)
    assert waited.action == "follow_up" and any(r.startswith("the author is waiting") for r in waited.reasons)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"version": "x", "precedence": ["monitor"]}, "precedence"),
        ({"version": "x", "levels": {"critical": 50, "high": 60, "normal": 35}}, "critical > high > normal"),
        ({"version": "x", "respond_within_minutes": {"low": 90}}, "exceeds max_respond_minutes"),
        ({"version": "x", "boosts": {"complaint": -1}}, "boosts.complaint"),
        ({"version": "x", "surprise": 1}, "surprise"),
        ({"version": "x", "profanity": {"patterns": ["kurw", "(unclosed"]}}, "'(unclosed' is not a regular expression"),
        ({"version": "x", "profanity": {"patterns": ["(dupa)?"]}}, "'(dupa)?' matches empty text"),
        ({"version": "x", "profanity": {"patterns": ["kurw", "(?i)dupa"]}}, "do not combine into one"),
        ({"levels": {}}, "version"),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_invalid_policies_fail_with_a_clear_error(raw, fragment):
    with pytest.raises(PolicyError) as info:
        parse_policy(raw, "brand.yaml")
    assert str(info.value).startswith("brand.yaml") and fragment in str(info.value)


def test_an_override_cannot_set_crisis_detection():
    """One detector watches every scope of the service; a per-brand crisis setting would be silently ignored."""
    base = load_policy().model_dump(mode="json")
    raw = {**base, "overrides": [{"match": {"brand_id": "acme"}, "version": "acme-1", "set": {"crisis": {}}}]}
    with pytest.raises(PolicyError, match=r"overrides\[0\].*whole service"):
        parse_policy_set(raw, "brand.yaml")
    raw["overrides"][0]["set"] = {"boosts": {"question": 40}}
    assert parse_policy_set(raw, "brand.yaml").overrides[0][1].boosts.question == 40


def test_precedence_is_configurable():
    custom = parse_policy(
        {
            "version": "brand-a/2",
            "precedence": [
                "escalate_crisis",
                "answer_question",
                "hide_and_review",
                "move_to_private",
                "apologize_and_resolve",
                "follow_up",
                "thank_and_engage",
                "monitor",
            ],
        }
    )
    d = decide(comment(), pred("negative", complaint=0.9, question=0.9), ["When?"], NOW, custom)
    assert d.action == "answer_question"


def with_signals(policy, **signals):
    raw = policy.model_dump(mode="json")
    return parse_policy({**raw, "signals": {**raw["signals"], **signals}})


def test_the_question_head_decides_and_the_rules_list_what_is_asked(policy):
    """The rules find where questions are; the head tells a rhetorical "?" from a real one. Where the head says no,
    the comment lists no question, gets no question boost and is not answered as one."""
    text = "Who on earth designs a checkout like this?"
    no = decide(comment(text), pred("negative", 0.8, question=0.08), [text], NOW, policy)
    assert not no.question and no.questions == [] and no.action != "answer_question"
    assert not any("question" in r for r in no.reasons)
    yes = decide(comment(text), pred("negative", 0.8, question=0.7), [text], NOW, policy)
    assert yes.question and yes.questions == [text] and yes.action == "answer_question"
    assert yes.priority_score == no.priority_score + policy.boosts.question
    # a floor of its own: also from that P(question); 0: every extracted question counts, as before the head decided
    assert decide(
        comment(text), pred(question=0.35), [text], NOW, with_signals(policy, question_span_floor=0.3)
    ).question
    assert decide(comment(text), pred(question=0.08), [text], NOW, with_signals(policy, question_span_floor=0)).question
    # a floor above the head's threshold admits nothing more and takes nothing away: the head's yes keeps its spans
    strict = with_signals(policy, question_span_floor=0.9)
    kept = decide(comment(text), pred(question=0.6), [text], NOW, strict)
    assert kept.question and kept.questions == [text]
    assert not decide(comment(text), pred(question=0.35), [text], NOW, strict).question


def test_the_head_alone_makes_a_question_unless_the_policy_wants_one_extracted(policy):
    asked = pred(question=0.9)
    d = decide(comment("Wondering about delivery times to Ireland"), asked, [], NOW, policy)
    assert d.question and d.questions == [] and d.action == "answer_question"
    assert any("a question (question score 0.90)" in r for r in d.reasons)
    strict = with_signals(policy, question_without_span=False)
    assert not decide(comment("Wondering about delivery times to Ireland"), asked, [], NOW, strict).question
