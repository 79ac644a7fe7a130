"""The assistant's dialogue layer: slots without a model (English and Chinese), follow-up turns that keep
their context, and grounded replies (tone, system prompt, checks, templates).

Scripted conversations run through ``DialogueState`` with the intent answers written in, which are what
``intent-en`` says for these utterances (measured; the slow test at the end runs the real model on the
English ones, so the script cannot drift from the model).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from megasense.assistant.catalogue import catalogue_from_dict
from megasense.assistant.context import DialogueState, Turn
from megasense.assistant.entities import EntityExtractor, extract_entities, iso_duration, merge_model_slots
from megasense.assistant.reply import check_reply, system_prompt, template_reply, tone_for
from megasense.errors import MegasenseInputError

NOW = dt.datetime(2025, 3, 12, 9, 30)  # a Wednesday


@pytest.fixture(scope="module")
def extractor():
    return EntityExtractor()


# --------------------------------------------------------------------------------------------- entities

# (utterance, {slot: normalised value}, {slot: resolved date} or None)
UTTERANCES = [
    ("what's the weather in Paris?", {"city": "Paris"}, None),
    ("and tomorrow?", {"date": "tomorrow"}, {"date": "2025-03-13"}),
    ("what about London?", {"city": "London"}, None),
    ("how about at 8", {"time": "08:00"}, None),
    ("and in Berlin", {"city": "Berlin"}, None),
    ("set a timer for 10 minutes", {"duration": "PT10M"}, None),
    ("make it 15", {"number": "15"}, None),
    ("wake me up at seven", {"time": "07:00"}, None),
    ("set an alarm for 7 am tomorrow", {"time": "07:00", "date": "tomorrow"}, {"date": "2025-03-13"}),
    ("remind me next monday at 6:30", {"date": "next monday", "time": "06:30"}, {"date": "2025-03-17"}),
    ("what about this weekend", {"date": "this weekend"}, {"date": "2025-03-15/2025-03-16"}),
    ("book a table on the 5th", {"date": "the 5th"}, {"date": "2025-04-05"}),
    ("December 24 at noon", {"date": "december 24", "time": "12:00"}, {"date": "2025-12-24"}),
    ("what's the weather on 2025-04-01", {"date": "2025-04-01"}, {"date": "2025-04-01"}),
    ("the day after tomorrow at 19:00", {"date": "day after tomorrow", "time": "19:00"}, {"date": "2025-03-14"}),
    ("run it for an hour and a half", {"duration": "PT1H30M"}, None),
    ("half past six in the evening", {"time": "18:30"}, None),
    ("weather in new york on friday", {"city": "New York City", "date": "friday"}, {"date": "2025-03-14"}),
    ("flights to San Francisco", {"city": "San Francisco"}, None),
    ("what time is it in sao paulo", {"city": "São Paulo"}, None),
    ("I'm flying to Nice at 8 pm", {"city": "Nice", "time": "20:00"}, None),
    ("Nice weather today", {"date": "today"}, None),  # a common word first in a sentence is no city
    ("I'm reading a book", {}, None),
    ("send a text to jordan", {}, None),  # a first name that is also a country, with no place word before it
    ("明天上海天气怎么样", {"date": "tomorrow", "city": "Shanghai"}, {"date": "2025-03-13"}),
    ("上海呢", {"city": "Shanghai"}, None),
    ("那明天呢？", {"date": "tomorrow"}, None),
    ("下周一早上七点叫醒我", {"date": "next monday", "time": "07:00"}, {"date": "2025-03-17"}),
    ("定一个十分钟的计时器", {"duration": "PT10M"}, None),
    ("旧金山下午3点的天气", {"city": "San Francisco", "time": "15:00"}, None),
    ("帮我查一下杭州西湖附近的餐厅", {"city": "Hangzhou", "place": "西湖"}, None),
    ("五月五号提醒我交房租", {"date": "may 5"}, {"date": "2025-05-05"}),
    ("晚上八点半提醒我给妈妈打电话", {"time": "20:30"}, None),
    ("一个半小时后提醒我", {"duration": "PT1H30M"}, None),
    ("这周末去巴黎", {"date": "this weekend", "city": "Paris"}, None),
    ("明天晚上十二点", {"date": "tomorrow", "time": "00:00"}, None),
    ("坐五号线去公司", {}, None),  # metro line 5, not the 5th
]


@pytest.mark.parametrize(("text", "expected", "resolved"), UTTERANCES, ids=[u[0] for u in UTTERANCES])
def test_entities_of_handwritten_utterances(extractor, text, expected, resolved):
    entities = extractor.extract(text, now=NOW)
    assert entities.slots(normalized=True) == expected
    for e in entities:
        assert text[e.start : e.end] == e.value  # offsets point at the words
    for slot, date in (resolved or {}).items():
        assert entities.get(slot).resolved == date


def test_entity_values_keep_the_words_and_drop_prepositions(extractor):
    entities = extractor.extract("set an alarm for 7 am on the 5th in New York")
    assert entities.slots() == {"time": "7 am", "date": "the 5th", "city": "New York"}
    assert entities.values(normalized=True)["city"] == ["New York City"]
    assert extractor.extract("tomorrow").get("date").resolved is None  # no `now`, no date


def test_entities_settle_overlaps_and_serialise(extractor):
    entities = extract_entities("remind me in 2 hours 30 minutes", now=NOW)
    assert [(e.slot, e.value, e.normalized) for e in entities] == [("duration", "2 hours 30 minutes", "PT2H30M")]
    data = json.loads(json.dumps(entities.to_dict()))
    assert data["entities"][0]["normalized"] == "PT2H30M" and data["text"].startswith("remind")
    assert iso_duration(90) == "PT1M30S" and iso_duration(2 * 86400) == "P2D"


def test_extractor_rejects_bad_arguments(extractor):
    with pytest.raises(MegasenseInputError, match="language='fr'"):
        extractor.extract("hello", language="fr")
    with pytest.raises(MegasenseInputError, match="min_population=100"):
        EntityExtractor(min_population=100)


def test_model_slots_are_merged_in_and_win_overlaps(extractor):
    from megasense.predictors.slots import Slot, SlotResult

    rules = extractor.extract("播放周杰伦的歌，明天上海")
    model = SlotResult(slots=(Slot("singer", "周杰伦", 2, 5, 0.93), Slot("location", "上海", 10, 12, 0.8)), tags=())
    merged = merge_model_slots(rules, model, rename={"location": "city"})
    assert merged.values() == {"singer": ["周杰伦"], "date": ["明天"], "city": ["上海"]}
    city = merged.get("city")
    assert city.source == "model" and city.score == pytest.approx(0.8)


# -------------------------------------------------------------------------------------- conversations

# Each turn: (utterance, model intent, model score, model says out of scope) -> (intent, slots, carried intent)
CONVERSATIONS = {
    "weather follow-ups carry the city, then the date": [
        (("what's the weather in Paris?", "weather", 0.999, False), ("weather", {"city": "Paris"}, False)),
        (("and tomorrow?", "date", 0.997, False), ("weather", {"city": "Paris", "date": "tomorrow"}, True)),
        (("what about London?", "oos", 0.58, True), ("weather", {"city": "London", "date": "tomorrow"}, True)),
        (("what time is it there?", "time", 1.0, False), ("time", {"city": "London"}, False)),
    ],
    "a bare number changes the timer": [
        (("set a timer for 10 minutes", "timer", 1.0, False), ("timer", {"duration": "10 minutes"}, False)),
        (("make it 15", "oos", 0.0, True), ("timer", {"duration": "15 minutes"}, True)),
        (("play some jazz", "play_music", 1.0, False), ("play_music", {}, False)),
    ],
    "alarm time changed, then a date added": [
        (("wake me up at seven", "alarm", 0.978, False), ("alarm", {"time": "seven"}, False)),
        (("how about at 8", "oos", 0.0, True), ("alarm", {"time": "8"}, True)),
        (("and tomorrow?", "date", 0.997, False), ("alarm", {"time": "8", "date": "tomorrow"}, True)),
    ],
    "a new intent starts fresh slots": [
        (("remind me to water the plants tomorrow at 6 pm", "reminder_update", 0.999, False),  # clinc150: a new one
         ("reminder_update", {"date": "tomorrow", "time": "6 pm"}, False)),
        (("set a timer for 20 minutes", "timer", 1.0, False), ("timer", {"duration": "20 minutes"}, False)),
    ],
    "an off-topic question leaves the frame for later": [
        (("will it rain in Seattle this weekend", "weather", 0.999, False),
         ("weather", {"city": "Seattle", "date": "this weekend"}, False)),
        (("who won the 1998 world cup", "oos", 1.0, True), (None, {"number": "1998"}, False)),
        (("and next monday?", "date", 0.955, False), ("weather", {"city": "Seattle", "date": "next monday"}, True)),
    ],
    "the same intent again keeps the slots": [
        (("what's the weather in Tokyo", "weather", 0.999, False), ("weather", {"city": "Tokyo"}, False)),
        (("what's the weather like today", "weather", 0.939, False),
         ("weather", {"city": "Tokyo", "date": "today"}, False)),
        (("how about in Berlin", "travel_suggestion", 0.951, False),
         ("weather", {"city": "Berlin", "date": "today"}, True)),
    ],
    "中文：天气追问": [
        (("明天上海天气怎么样", "weather", 0.9, False), ("weather", {"date": "明天", "city": "上海"}, False)),
        (("那后天呢？", None, 0.0, True), ("weather", {"date": "后天", "city": "上海"}, True)),
        (("北京呢", "oos", 0.2, True), ("weather", {"date": "后天", "city": "北京"}, True)),
    ],
    "中文：计时器改时长": [
        (("帮我定一个十分钟的计时器", "timer", 0.9, False), ("timer", {"duration": "十分钟"}, False)),
        (("改成15分钟", None, 0.0, True), ("timer", {"duration": "15分钟"}, True)),
        (("那帮我定一个明天早上七点的闹钟", "alarm", 0.9, False),
         ("alarm", {"date": "明天", "time": "早上七点"}, False)),
        (("那八点呢", None, 0.0, True), ("alarm", {"date": "明天", "time": "八点"}, True)),
    ],
}  # fmt: skip


def _run(state: DialogueState, extractor: EntityExtractor, text: str, intent, score, oos) -> Turn:
    return state.update(
        text, intent=intent, intent_score=score, out_of_scope=oos, slots=extractor.extract(text).slots()
    )


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_scripted_conversations(extractor, name):
    state = DialogueState()
    for (text, intent, score, oos), (want_intent, want_slots, want_carried) in CONVERSATIONS[name]:
        turn = _run(state, extractor, text, intent, score, oos)
        assert (turn.intent, turn.slots, turn.carried_intent) == (want_intent, want_slots, want_carried), text
        assert turn.out_of_scope == (want_intent is None)
        assert set(turn.carried_slots) <= set(turn.slots)


def test_carried_slots_name_what_came_from_earlier_turns(extractor):
    state = DialogueState()
    _run(state, extractor, "what's the weather in Paris?", "weather", 0.999, False)
    turn = _run(state, extractor, "and tomorrow?", "date", 0.997, False)
    assert turn.carried_slots == ("city",)
    turn = _run(state, extractor, "what about London?", "oos", 0.58, True)
    assert turn.carried_slots == ("date",)


def test_a_full_request_after_a_cue_is_not_a_follow_up(extractor):
    state = DialogueState()
    _run(state, extractor, "what's the weather in Paris?", "weather", 0.999, False)
    turn = _run(state, extractor, "and set an alarm for 7 am", "alarm", 1.0, False)
    assert (turn.intent, turn.slots, turn.carried_intent) == ("alarm", {"time": "7 am"}, False)
    assert state.frame is turn


def test_without_a_frame_nothing_is_carried(extractor):
    turn = _run(DialogueState(), extractor, "and tomorrow?", "oos", 0.1, True)
    assert (turn.intent, turn.out_of_scope, turn.slots, turn.carried_slots) == (None, True, {"date": "tomorrow"}, ())


def test_state_keeps_at_most_max_turns(extractor):
    state = DialogueState(max_turns=2)
    _run(state, extractor, "what's the weather in Paris?", "weather", 0.999, False)
    _run(state, extractor, "who won the 1998 world cup", "oos", 1.0, True)
    assert state.frame is not None and state.frame.intent == "weather"
    _run(state, extractor, "what is the capital of peru", "oos", 1.0, True)
    assert len(state.turns) == 2 and state.frame is None  # the weather turn fell out
    turn = _run(state, extractor, "and tomorrow?", "oos", 0.2, True)
    assert turn.intent is None and turn.slots == {"date": "tomorrow"}
    state.reset()
    assert len(state.turns) == 0


def test_state_round_trips_through_json(extractor):
    state = DialogueState(max_turns=4)
    for text, intent, score, oos in [
        ("what's the weather in Paris?", "weather", 0.999, False),
        ("and tomorrow?", "date", 0.997, False),
    ]:
        _run(state, extractor, text, intent, score, oos)
    data = json.loads(json.dumps(state.to_dict()))
    again = DialogueState.from_dict(data)
    assert again.max_turns == 4 and list(again.turns) == list(state.turns)
    for s in (state, again):
        turn = _run(s, extractor, "what about London?", "oos", 0.58, True)
    assert turn.slots == {"city": "London", "date": "tomorrow"} and again.to_dict() == state.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["turns"][0]["slots"].update(city=3), r"turns\[0\]\.slots\.city must be a string"),
        (lambda d: d["turns"][1].pop("text"), r"turns\[1\]\.text is missing"),
        (lambda d: d["turns"][0].update(intent_score="high"), r"turns\[0\]\.intent_score must be int or float"),
        (lambda d: d["turns"][0].update(carried_slots=["date"]), r"turns\[0\]\.carried_slots names \['date'\]"),
        (lambda d: d.update(version=7), "version 7"),
        (lambda d: d.update(turns={}), "turns must be a list"),
    ],
)
def test_state_from_bad_json_names_the_field(extractor, change, message):
    state = DialogueState()
    _run(state, extractor, "what's the weather in Paris?", "weather", 0.999, False)
    _run(state, extractor, "and tomorrow?", "date", 0.997, False)
    data = json.loads(json.dumps(state.to_dict()))
    change(data)
    with pytest.raises(MegasenseInputError, match=message):
        DialogueState.from_dict(data)


def test_state_settings_are_checked():
    with pytest.raises(MegasenseInputError, match="max_turns=0"):
        DialogueState(max_turns=0)
    with pytest.raises(MegasenseInputError, match="min_score=2"):
        DialogueState(min_score=2)


# ---------------------------------------------------------------------------------------------- replies

CATALOGUE = catalogue_from_dict(
    {
        "name": "Smart speaker",
        "feature": [
            {
                "id": "alarms",
                "name": "Alarms",
                "intents": ["alarm"],
                "description": "Wake up to an alarm at a time you choose. Check or cancel the alarms you have set.",
            },
            {
                "id": "weather",
                "name": "Weather",
                "intents": ["weather"],
                "description": "Forecasts for today or the coming days in any city.",
            },
            {
                "id": "shopping",
                "name": "Shopping list",
                "intents": ["shopping_list"],
                "description": "Keep a shopping list and order the items from your store at support.example.com.",
            },
        ],
    }
)
CATALOGUE_ZH = catalogue_from_dict(
    {
        "name": "智能音箱",
        "language": "zh",
        "feature": [
            {
                "id": "alarms",
                "name": "闹钟",
                "intents": ["alarm"],
                "description": "在你选择的时间叫醒你。可以查看和取消已设的闹钟。",
            },
            {
                "id": "weather",
                "name": "天气",
                "intents": ["weather"],
                "description": "查询今天和未来几天任何城市的天气。",
            },
        ],
    }
)
ALARMS, WEATHER, SHOPPING = (CATALOGUE.get(i) for i in ("alarms", "weather", "shopping"))


@pytest.mark.parametrize(
    ("emotions", "sentiment", "tone"),
    [
        (["annoyance"], None, "calm and apologetic"),
        (["joy", "anger"], None, "calm and apologetic"),  # the need comes first
        (["gratitude"], None, "warm"),
        (["confusion"], "neutral", "patient and clear"),
        (["sadness"], None, "gentle and supportive"),
        (["nervousness"], None, "reassuring"),
        (["neutral"], None, "neutral and concise"),
        ([], "negative", "calm and apologetic"),
        ([], "positive", "warm"),
    ],
)
def test_tone_follows_the_emotion(emotions, sentiment, tone):
    assert tone_for(emotions, sentiment) == tone


def test_system_prompt_grounds_on_one_feature():
    prompt = system_prompt(
        catalogue_name="Smart speaker",
        intent="alarm",
        out_of_scope=False,
        emotions=["annoyance", "neutral"],
        tone="calm and apologetic",
        feature=ALARMS,
        slots={"time": "7 am"},
        language="en",
    )
    assert ALARMS.facts() in prompt and "Weather" not in prompt and "time = 7 am" in prompt
    assert "1-2 short sentences" in prompt and "calm and apologetic" in prompt and "annoyance" in prompt
    assert "neutral" not in prompt
    oos = system_prompt(
        catalogue_name="Smart speaker",
        intent=None,
        out_of_scope=True,
        emotions=[],
        tone="neutral and concise",
        feature=None,
        slots={},
        language="en",
    )
    assert "cannot help" in oos and "Alarms" not in oos
    zh = system_prompt(
        catalogue_name="智能音箱",
        intent="weather",
        out_of_scope=False,
        emotions=[],
        tone="warm",
        feature=CATALOGUE_ZH.get("weather"),
        slots={"city": "上海"},
        language="zh",
    )
    assert "用中文回答" in zh and CATALOGUE_ZH.get("weather").facts() in zh and "热情" in zh and "city = 上海" in zh
    with pytest.raises(MegasenseInputError, match="language='de'"):
        system_prompt(
            catalogue_name="x",
            intent=None,
            out_of_scope=True,
            emotions=[],
            tone="warm",
            feature=None,
            slots={},
            language="de",
        )


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("   \n", "empty reply"),
        ("Alarms can wake you up. " * 20, "too long"),
        ("Alarms can wake you at seven. Alarms can wake you at seven.", "repeats a sentence"),
        ("Sure sure sure sure, alarms.", "again and again"),
        ("I can set the alarm and the alarm and the alarm and the alarm for you", "loops on"),
        ("I've booked a table for two at seven.", "claims an action"),
        ("Your order has been placed.", "claims an action"),
        ("I can also read you the news every morning.", "'news'"),
        ("Try the Podcast feature for that.", "'podcast'"),
        ("Our Sleep Coach app can help with that.", "not in the catalogue: 'Sleep Coach'"),
        ("Call our support line on +1 555 123 4567.", "phone number"),
        ("See https://alarms.example.org for more.", "link or address"),
        ("闹钟可以在七点叫醒你。", "not in English"),
        ("Your balance is currently $500.", "states '500'"),  # invented by the model: nobody said it
        ("Today is the 23rd.", "states '23'"),
        ("The alarm rings on Friday.", "states 'Friday'"),
        ("That's a great idea! Let me know what else you need.", "off topic"),
        ("The Weather feature has forecasts for any city.", "off topic"),  # another feature than the one asked
    ],
)
def test_check_reply_catches_each_problem(reply, problem):
    found = check_reply(reply, feature=ALARMS, catalogue=CATALOGUE)
    assert found is not None and problem in found, found


def test_check_reply_passes_good_replies():
    good = [
        "Alarms can wake you at 7 am tomorrow; want me to walk you through it?",
        "I can't order food yet, but Alarms can wake you up.",  # a refusal promises nothing
        "The Alarms feature can wake you on any day of the week.",
        "Sure — the alarm you have set can be cancelled any time.",
    ]
    for reply in good:
        grounding = "wake me up at 7 am tomorrow 07:00"  # the user's words and slots: the 7 is theirs
        assert check_reply(reply, feature=ALARMS, catalogue=CATALOGUE, grounding=grounding) is None, reply
    assert "states '7'" in check_reply(good[0], feature=ALARMS, catalogue=CATALOGUE)  # without it, invented
    assert check_reply("Alarm set for seven.", feature=ALARMS, catalogue=CATALOGUE, grounding="at 7") is None
    # an offer or a description is no claim; a claim is, unless the grounded feature's facts describe it
    assert check_reply("Shall I add it to your shopping list?", feature=SHOPPING, catalogue=CATALOGUE) is None
    assert "claims an action" in check_reply(
        "I've added it to your shopping list.", feature=WEATHER, catalogue=CATALOGUE
    )
    assert "claims an action" in check_reply("I'll order it for you.", feature=WEATHER, catalogue=CATALOGUE)
    # an action the grounded feature's facts describe, and an address the catalogue holds
    assert check_reply("I ordered them, see support.example.com.", feature=SHOPPING, catalogue=CATALOGUE) is None
    assert check_reply("I've ordered them.", feature=ALARMS, catalogue=CATALOGUE) is not None


def test_check_reply_repeated_previous_reply():
    last = "Alarms can wake you at seven."
    assert check_reply("alarms can wake you at seven", feature=ALARMS, catalogue=CATALOGUE, previous_replies=[last])
    assert check_reply("Weather has forecasts.", feature=WEATHER, catalogue=CATALOGUE, previous_replies=[last]) is None


def test_check_reply_in_chinese():
    alarms = CATALOGUE_ZH.get("alarms")
    assert check_reply("闹钟可以在明天七点叫醒你。", feature=alarms, catalogue=CATALOGUE_ZH) is None
    assert "not in Chinese" in check_reply("The alarm can wake you at seven.", feature=alarms, catalogue=CATALOGUE_ZH)
    assert "claims an action" in check_reply("我已经帮你订好了酒店。", feature=alarms, catalogue=CATALOGUE_ZH)
    assert "'新闻'" in check_reply("我还可以给你读新闻。", feature=alarms, catalogue=CATALOGUE_ZH)
    assert "loops on" in check_reply("叫醒你叫醒你叫醒你叫醒你叫醒你叫醒你", feature=alarms, catalogue=CATALOGUE_ZH)
    assert "too long" in check_reply("闹钟" * 80, feature=alarms, catalogue=CATALOGUE_ZH)


def test_template_replies_in_english():
    reply = template_reply(
        intent="alarm",
        out_of_scope=False,
        feature=ALARMS,
        slots={"time": "7 am", "date": "tomorrow"},
        emotions=["annoyance"],
        language="en",
    )
    assert reply == (
        "Sorry that's been frustrating. I can help with that: Alarms — Wake up to an alarm at a time you choose. "
        "At 7 am tomorrow?"
    )
    weather = template_reply(
        intent="weather",
        out_of_scope=False,
        feature=WEATHER,
        slots={"city": "Paris", "date": "friday"},
        emotions=["neutral"],
        language="en",
    )
    assert weather.endswith("On friday in Paris?") and not weather.startswith("Sorry")
    oos = template_reply(
        intent=None,
        out_of_scope=True,
        feature=None,
        slots={},
        emotions=[],
        language="en",
        suggestions=[ALARMS, WEATHER],
    )
    assert oos == "Sorry, I can't help with that yet. You can ask me about Alarms or Weather."
    for text, feature in ((reply, ALARMS), (weather, WEATHER), (oos, None)):  # the fallback passes the checks
        grounding = "7 am tomorrow friday Paris"  # the slots ground it
        assert check_reply(text, feature=feature, catalogue=CATALOGUE, grounding=grounding) is None, text


def test_template_replies_in_chinese():
    alarms = CATALOGUE_ZH.get("alarms")
    reply = template_reply(
        intent="alarm",
        out_of_scope=False,
        feature=alarms,
        slots={"date": "明天", "time": "早上七点"},
        emotions=["gratitude"],
        language="zh",
    )
    assert reply == "很乐意帮忙！我可以帮你：闹钟——在你选择的时间叫醒你。是明天早上七点吗？"
    oos = template_reply(
        intent=None,
        out_of_scope=True,
        feature=None,
        slots={},
        emotions=["anger"],
        language="zh",
        suggestions=list(CATALOGUE_ZH),
    )
    assert oos == "抱歉让你不愉快了。抱歉，这个我暂时帮不了。你可以问我：闹钟、天气。"
    for text in (reply, oos):
        assert check_reply(text, feature=alarms, catalogue=CATALOGUE_ZH) is None, text


# -------------------------------------------------------------------------------- with the real model


@pytest.mark.slow
def test_scripted_english_conversations_with_intent_en(extractor):
    """The English scripts with ``intent-en``'s own answers: the follow-ups resolve as scripted."""
    from megasense.predictors.sentiment import load_predictor

    predictor = load_predictor("intent-en")
    for name, turns in CONVERSATIONS.items():
        texts = [text for (text, *_), _ in turns]
        if any("\u4e00" <= ch <= "\u9fff" for text in texts for ch in text):
            continue  # intent-en reads English
        batch = predictor.predict(texts)
        state = DialogueState()
        for i, ((text, *_), (want_intent, want_slots, want_carried)) in enumerate(turns):
            result = batch[i]
            oos = result.label == predictor.oos_label
            turn = _run(state, extractor, text, None if oos else result.label, result.score, oos)
            assert (turn.intent, turn.slots, turn.carried_intent) == (want_intent, want_slots, want_carried), (
                name,
                text,
                result.label,
                result.score,
            )
