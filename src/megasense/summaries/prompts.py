"""What the decoder is asked, per style and language.

SmolLM2-135M follows an instruction best with one worked example before the real request (a few-shot turn), a
short system message, and the output's first words given by the format ("Summary:"). The examples below were
written for megasense (no data set's text), so nothing of an evaluation set leaks into the prompt.
"""

from __future__ import annotations

from megasense.summaries.text import count_words

SYSTEM = {
    "en": "You are a careful assistant who writes short, faithful summaries. Use only facts stated in the text.",
    "zh": "你是一个认真的助手，只根据原文写简短、准确的摘要。",
}

_DOC_EXAMPLE = {
    "en": (
        "Photosynthesis is the process by which green plants turn light into chemical energy. It takes place in the "
        "chloroplasts, where chlorophyll absorbs sunlight. Water and carbon dioxide are converted into glucose, and "
        "oxygen is released as a by-product. Without photosynthesis there would be almost no oxygen in the air.",
        "Green plants use photosynthesis in their chloroplasts to turn light, water and carbon dioxide into glucose, "
        "releasing oxygen.",
    ),
    "zh": (
        "光合作用是绿色植物把光能转化为化学能的过程。它发生在叶绿体中，叶绿素吸收阳光。水和二氧化碳被转化为葡萄糖，"
        "同时释放出氧气。",
        "绿色植物在叶绿体中通过光合作用把光能转化为葡萄糖并释放氧气。",
    ),
}

_DIALOGUE_EXAMPLE = (
    "#Person1#: Hi, I'd like to return these shoes. They're too small.\n"
    "#Person2#: Do you have the receipt?\n"
    "#Person1#: Yes, here it is. Can I get a bigger size instead?\n"
    "#Person2#: Sure, we have them in size ten. I'll swap them for you.",
    "#Person1# wants to return shoes that are too small, and #Person2# exchanges them for a bigger size.",
)

_REPORTED_EXAMPLE = (
    "#Person1# wants to return these shoes. They are too small for #Person1#. #Person2# has them in size ten. "
    "#Person2# will swap them for #Person1#.",
    _DIALOGUE_EXAMPLE[1],
)
"""The dialogue example as ``dialogue.reported_sentences`` gives it: a summary of a dialogue's statements."""

_BULLETS_EXAMPLE = (
    _DOC_EXAMPLE["en"][0],
    "- Photosynthesis turns light into chemical energy in green plants.\n"
    "- It happens in chloroplasts, where chlorophyll absorbs sunlight.\n"
    "- Water and carbon dioxide become glucose, and oxygen is released.",
)

_QUESTION_EXAMPLE = (
    "Water and carbon dioxide are converted into glucose, and oxygen is released as a by-product.",
    "What do plants release as a by-product when they make glucose?",
)


def abstract_messages(source: str, *, lang: str, kind: str, max_words: int) -> list[dict[str, str]]:
    """A request for a plain abstract of ``source`` in at most ``max_words`` words, after one worked example.
    ``kind``: ``text``, ``dialogue`` (turns as said) or ``reported`` (a dialogue's statements in reported speech)."""
    if kind == "reported":
        example, ask = (
            _REPORTED_EXAMPLE,
            "Summarize what the speakers said in one sentence, naming them as in the text.",
        )
    elif kind == "dialogue":
        example, ask = _DIALOGUE_EXAMPLE, "Summarize the dialogue in one sentence, naming the speakers as in it."
        if lang == "zh":
            ask = "用一句话概括这段对话，保留说话人的称呼。"
    else:
        example = _DOC_EXAMPLE[lang]
        ask = (
            f"用不超过{max_words}个字概括下面的文字。"
            if lang == "zh"
            else f"Summarize the text in at most {max_words} words."
        )
    example_words = count_words(example[1])
    example_ask = ask.replace(str(max_words), str(max(example_words, 10)))
    return [
        {"role": "system", "content": SYSTEM[lang]},
        {"role": "user", "content": f"{example_ask}\n\n{example[0]}"},
        {"role": "assistant", "content": example[1]},
        {"role": "user", "content": f"{ask}\n\n{source}"},
    ]


def bullets_messages(source: str, *, points: int) -> list[dict[str, str]]:
    """A request for ``points`` bullet points (English; Chinese bullets are extracted, the model writes little
    Chinese)."""
    ask = "List the main points of the text as short bullet points."
    return [
        {"role": "system", "content": SYSTEM["en"]},
        {"role": "user", "content": f"{ask}\n\n{_BULLETS_EXAMPLE[0]}"},
        {"role": "assistant", "content": _BULLETS_EXAMPLE[1]},
        {"role": "user", "content": f"{ask.replace('short', f'{points} short')}\n\n{source}"},
    ]


def question_messages(sentence: str) -> list[dict[str, str]]:
    """A request for one review question that ``sentence`` answers."""
    ask = "Write one review question that this sentence answers."
    return [
        {"role": "system", "content": SYSTEM["en"]},
        {"role": "user", "content": f"{ask}\n\n{_QUESTION_EXAMPLE[0]}"},
        {"role": "assistant", "content": _QUESTION_EXAMPLE[1]},
        {"role": "user", "content": f"{ask}\n\n{sentence}"},
    ]
