"""``POST /v1/chat/completions``: the real smollm2-135m-instruct through FastAPI's TestClient and, over a live
uvicorn, through the official ``openai`` client; whole and streamed replies agree; usage, validation errors,
truncation of a long history, stop strings (also held back while streaming), client disconnects, several
streams at once, a responder that replaces the reply, and a schema fuzz with a tiny decoder."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import torch

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from _live import serving  # noqa: E402
from megasense.config import GenerationConfig  # noqa: E402
from megasense.errors import ConfigError, MegasenseInputError  # noqa: E402
from megasense.predictors.generation import ChatPrompt, ChatStream, TextGenerator  # noqa: E402
from megasense.service.app import create_app  # noqa: E402
from megasense.service.chat import ChatBackend, ChatError, ModelResponder  # noqa: E402
from megasense.service.settings import ServiceSettings, load_settings  # noqa: E402

NAME = "smollm2-135m-instruct"
CONTEXT = 256
"""The TestClient app's context (the model has 8192): a long history is cheap to make."""
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def smol():
    from megasense.zoo.embedded import ModelNotInstalledError
    from megasense.zoo.load import load_model

    try:
        return load_model(NAME)
    except ModelNotInstalledError as exc:
        pytest.skip(f"needs the embedded {NAME}: {exc}")


@pytest.fixture(autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


def _settings(**kw) -> ServiceSettings:
    base = dict(model="", embedding_model="", max_texts_per_request=64, max_chars_per_text=4000)
    return ServiceSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def client(smol):
    """The real model behind a TestClient, its context cut to ``CONTEXT`` tokens."""
    generator = TextGenerator(smol, context_tokens=CONTEXT)
    app = create_app(_settings(), backends=lambda s: [ChatBackend(ModelResponder(NAME, generator))])
    with TestClient(app) as c:
        yield c


class Watched:
    """A responder around the model that keeps every stream it starts (a responder of the plug-in kind)."""

    def __init__(self, inner: ModelResponder) -> None:
        self.inner, self.name, self.context_tokens = inner, inner.name, inner.context_tokens
        self.streams: list[ChatStream] = []

    def respond(self, messages, config, stop) -> ChatStream:
        stream = self.inner.respond(messages, config, stop)
        self.streams.append(stream)
        return stream


@pytest.fixture(scope="module")
def live(smol):
    """The real model (its whole context) behind a live uvicorn on a free loopback port."""
    watched = Watched(ModelResponder(NAME, TextGenerator(smol)))
    backend = ChatBackend(watched)
    with serving(create_app(_settings(), backends=lambda s: [backend])) as url:
        yield url, backend, watched


def _envelope(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
    return body["error"]["message"]


def _events(lines) -> list:
    """The JSON of each ``data:`` event (``[DONE]`` as the string), checking the SSE framing."""
    events = []
    for line in lines:
        if not line:
            continue
        assert line.startswith("data: "), line
        data = line[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def _stream(client: TestClient, body: dict) -> list:
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return _events(r.iter_lines())


# ----------------------------------------------------------------------------------------------
# Whole and streamed, through the TestClient
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_streamed_pieces_join_to_the_greedy_reply_with_the_same_usage(client, smol):
    body = {"model": NAME, "messages": QUESTION, **GREEDY}
    whole = client.post("/v1/chat/completions", json=body)
    assert whole.status_code == 200, whole.text
    answer = whole.json()
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["model"] == NAME
    (choice,) = answer["choices"]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    expected_prompt = len(TextGenerator(smol).chat_ids(QUESTION, 8).ids)
    usage = answer["usage"]
    assert usage["prompt_tokens"] == expected_prompt
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert answer["truncation"] == {"dropped_messages": 0, "last_message_cut": False}

    events = _stream(client, {**body, "stream_options": {"include_usage": True}})
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]
    assert "".join(pieces) == choice["message"]["content"]
    assert len([p for p in pieces if p]) > 1  # it came in pieces, not at once
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finish] == [choice["finish_reason"]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == usage
    assert all(c["usage"] is None for c in chunks[:-1])


@pytest.mark.slow
def test_without_include_usage_the_stream_has_no_usage_chunk(client):
    events = _stream(client, {"messages": QUESTION, **GREEDY})
    assert events[-1] == "[DONE]"
    assert all("usage" not in c and c["choices"] for c in events[:-1])


# ----------------------------------------------------------------------------------------------
# Validation, limits and the endpoint's absence: the service's error envelope
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": QUESTION, "n": 2}, "n=2"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role 'tool'"),
        ({"messages": [{"role": "user"}]}, "content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "image_url"),
        ({"messages": QUESTION, "temperature": 2.5}, "temperature=2.5"),
        ({"messages": QUESTION, "temperature": "hot"}, "temperature"),
        ({"messages": QUESTION, "top_p": -0.1}, "top_p=-0.1"),
        ({"messages": QUESTION, "max_tokens": 0}, "max_tokens"),
        ({"messages": QUESTION, "max_tokens": CONTEXT}, f"at most {CONTEXT - 1}"),
        ({"messages": QUESTION, "max_completion_tokens": 10**6}, "max_completion_tokens=1000000"),
        ({"messages": QUESTION, "stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"messages": QUESTION, "stop": ""}, "empty string"),
        ({"messages": QUESTION, "stream": "yes"}, "stream"),
    ],
)
def test_invalid_requests_answer_400_in_the_envelope(client, body, words):
    message = _envelope(client.post("/v1/chat/completions", json=body), 400)
    assert words in message


def test_nan_and_infinity_are_refused_by_name(client):
    start = '{"messages": [{"role": "user", "content": "x"}], '
    for raw in (start + '"temperature": NaN}', start + '"top_p": Infinity}'):  # JSON has neither; Python reads both
        r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert "must be a number from 0 to" in _envelope(r, 400)


def test_limits_and_unknown_model(client):
    long = {"messages": [{"role": "user", "content": "x" * 4001}]}
    assert "messages[0].content has 4001 characters" in _envelope(client.post("/v1/chat/completions", json=long), 413)
    many = {"messages": QUESTION * 65}
    assert "65 messages" in _envelope(client.post("/v1/chat/completions", json=many), 413)
    other = {"model": "gpt-4o", "messages": QUESTION}
    assert "not served here" in _envelope(client.post("/v1/chat/completions", json=other), 422)


def test_unknown_fields_are_ignored_as_openai_does(client):
    body = {"messages": QUESTION, **GREEDY, "max_tokens": 1, "presence_penalty": 0.5, "user": "u1", "logit_bias": {}}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 1


def test_without_a_chat_model_the_endpoint_says_how_to_serve_one():
    app = create_app(_settings(), backends=lambda s: [])
    with TestClient(app) as c:
        message = _envelope(c.post("/v1/chat/completions", json={"messages": QUESTION}), 404)
        assert "--chat-model" in message and "MEGASENSE_CHAT_MODEL" in message
        assert c.get("/v1/models").json()["data"] == []


def test_chat_model_setting_refuses_classifiers_and_unknown_names(tmp_path):
    with pytest.raises(ConfigError, match="chat_model='intent-en' is the shipped intent classifier"):
        load_settings(chat_model="intent-en")
    with pytest.raises(ConfigError, match="chat_model='nope': no such model directory"):
        load_settings(chat_model="nope")
    assert load_settings(chat_model="").chat_model is None
    assert load_settings(chat_model=NAME).chat_model == NAME


def test_models_lists_the_chat_model_with_its_context(client):
    (card,) = client.get("/v1/models").json()["data"]
    assert (card["id"], card["task"], card["max_tokens"]) == (NAME, "chat", CONTEXT)


# ----------------------------------------------------------------------------------------------
# Truncation of a long history
# ----------------------------------------------------------------------------------------------
def _history(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a terse assistant called Ada."}]
    for i in range(turns):
        messages += [
            {"role": "user", "content": f"Question {i}: what do you know about the number {i}? Tell me at length."},
            {"role": "assistant", "content": f"The number {i} is a whole number, and that is all I will say."},
        ]
    return [*messages, {"role": "user", "content": "And what is your name?"}]


def test_chat_ids_drop_the_oldest_whole_turns_and_keep_the_system_message(smol):
    generator = TextGenerator(smol, context_tokens=CONTEXT)
    messages = _history(12)
    prompt = generator.chat_ids(messages, 32)
    assert len(prompt.ids) <= CONTEXT - 32
    assert prompt.dropped_messages > 0 and prompt.dropped_messages % 2 == 0  # whole user/assistant turns
    assert not prompt.last_turn_cut
    text = smol.tokenizer.decode(prompt.ids, skip_special_tokens=False)
    assert "You are a terse assistant called Ada." in text and text.count("<|im_start|>system") == 1
    assert text.rstrip().endswith("And what is your name?<|im_end|>\n<|im_start|>assistant")
    kept = messages[:1] + messages[1 + prompt.dropped_messages :]
    assert prompt.ids == generator.chat_ids(kept, 32).ids  # exactly the newest turns that fit
    one_more = messages[:1] + messages[prompt.dropped_messages - 1 :]
    assert len(TextGenerator(smol).chat_ids(one_more, 32).ids) > CONTEXT - 32  # one more turn would not fit


def test_a_last_turn_too_long_alone_loses_its_start_and_says_so(smol):
    generator = TextGenerator(smol, context_tokens=CONTEXT)
    words = " ".join(f"w{i}" for i in range(400))
    prompt = generator.chat_ids([{"role": "system", "content": "Be brief."}, {"role": "user", "content": words}], 16)
    assert prompt.last_turn_cut and len(prompt.ids) <= CONTEXT - 16
    text = smol.tokenizer.decode(prompt.ids, skip_special_tokens=False)
    assert "Be brief." in text and "w399" in text and "w0 " not in text
    with pytest.raises(MegasenseInputError, match="shorten the system message"):
        generator.chat_ids([{"role": "system", "content": words}, {"role": "user", "content": "hi"}], 16)


@pytest.mark.slow
def test_the_service_reports_truncation(client):
    r = client.post("/v1/chat/completions", json={"messages": _history(12), "max_tokens": 2, "temperature": 0})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["truncation"]["dropped_messages"] > 0 and not answer["truncation"]["last_message_cut"]
    assert answer["usage"]["prompt_tokens"] <= CONTEXT - 2
    events = _stream(client, {"messages": _history(12), "max_tokens": 2, "temperature": 0})
    assert events[0]["truncation"] == answer["truncation"]
    too_long = [{"role": "system", "content": "word " * 400}, *QUESTION]
    refused = client.post("/v1/chat/completions", json={"messages": too_long})
    assert "shorten the system message" in _envelope(refused, 400)


# ----------------------------------------------------------------------------------------------
# Stop strings
# ----------------------------------------------------------------------------------------------
class Scripted:
    """An engine that "generates" the given tokens, then the end token (unless max_new_tokens comes first)."""

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens

    def stream(self, prompts, config):
        yield from ([t] for t in self.tokens[: config.max_new_tokens])
        if len(self.tokens) < config.max_new_tokens:
            yield [None]


def _scripted(smol, text: str) -> TextGenerator:
    generator = TextGenerator(smol)
    generator.engine = Scripted(smol.tokenizer.encode(text, add_special_tokens=False))
    return generator


@pytest.mark.parametrize(
    ("text", "stop", "expected"),
    [
        ("Hello world, the answer is 42. END of the reply", ["END"], "Hello world, the answer is 42. "),
        ("Hello world, the answer is 42. END of the reply", ["42. E"], "Hello world, the answer is "),  # across tokens
        ("Hello world, the answer is 42. END", ["zzz", "answer"], "Hello world, the "),  # the first of several
        ("the tail starts a stop string: c", ["c d"], "the tail starts a stop string: c"),  # held, then let go
        ("你好，世界！🙂 再见", ["再见"], "你好，世界！🙂 "),  # multi-byte characters over several tokens
    ],
)
def test_stop_strings_cut_the_reply_and_streaming_holds_back_what_could_start_one(smol, text, stop, expected):
    config = GenerationConfig(max_new_tokens=100)
    pieces = list(_scripted(smol, text).stream("hi", config, stop=stop))
    assert "".join(pieces) == expected
    assert all("\ufffd" not in p for p in pieces) and len(pieces) > 1
    reply = _scripted(smol, text).chat(QUESTION, config, stop=stop)
    assert reply.text == expected and reply.finish_reason == "stop"


def test_finish_reason_length_and_token_counts(smol):
    text = "one two three four five six seven eight"
    tokens = smol.tokenizer.encode(text, add_special_tokens=False)
    reply = _scripted(smol, text).chat(QUESTION, GenerationConfig(max_new_tokens=3))
    assert reply.finish_reason == "length" and reply.completion_tokens == 3
    assert reply.text == smol.tokenizer.decode(tokens[:3])
    whole = _scripted(smol, text).chat(QUESTION, GenerationConfig(max_new_tokens=100))
    assert (whole.text, whole.finish_reason, whole.completion_tokens) == (text, "stop", len(tokens))
    stream = _scripted(smol, text).stream_chat(QUESTION, GenerationConfig(max_new_tokens=100))
    with pytest.raises(RuntimeError, match="not finished"):
        stream.reply  # noqa: B018
    assert "".join(stream) == text and stream.reply == whole


@pytest.mark.slow
def test_stop_strings_over_http_whole_and_streamed(client):
    plain = client.post("/v1/chat/completions", json={"messages": QUESTION, **GREEDY}).json()
    content = plain["choices"][0]["message"]["content"]
    words = content.split(" ")
    assert len(words) >= 3, content
    stop = " " + words[2][:2]  # starts inside the reply: everything from it on is cut
    expected = content[: content.index(stop)]
    body = {"messages": QUESTION, **GREEDY, "stop": [stop, "never seen"]}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert answer["choices"][0]["message"]["content"] == expected
    assert answer["choices"][0]["finish_reason"] == "stop"
    events = _stream(client, body)
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in events[:-1] if c["choices"]]
    assert "".join(pieces) == expected


# ----------------------------------------------------------------------------------------------
# The official openai client, over a live server
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_openai_client_works_unchanged(live, client):
    openai = pytest.importorskip("openai")
    url, _, _ = live
    api = openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)
    whole = api.chat.completions.create(model=NAME, messages=QUESTION, max_tokens=8, temperature=0)
    content = whole.choices[0].message.content
    reference = client.post("/v1/chat/completions", json={"messages": QUESTION, **GREEDY}).json()
    assert content == reference["choices"][0]["message"]["content"]
    assert whole.usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert whole.usage.completion_tokens == reference["usage"]["completion_tokens"]
    assert whole.choices[0].finish_reason == reference["choices"][0]["finish_reason"]

    chunks = list(
        api.chat.completions.create(
            model=NAME,
            messages=QUESTION,
            max_completion_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
    assert chunks[-1].usage.total_tokens == whole.usage.total_tokens
    assert NAME in [m.id for m in api.models.list().data]
    with pytest.raises(openai.BadRequestError, match="n=2"):
        api.chat.completions.create(model=NAME, messages=QUESTION, n=2)


@pytest.mark.slow
def test_a_client_that_hangs_up_stops_the_generation(live):
    url, backend, watched = live
    body = {"messages": [{"role": "user", "content": "Write a very long story about the sea."}], "max_tokens": 2000}
    http = httpx.Client(timeout=60)
    with http, http.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                break  # the first piece of text: hang up
    deadline = time.time() + 30
    while backend.jobs and time.time() < deadline:
        time.sleep(0.05)
    assert not backend.jobs  # the worker thread stopped (2000 tokens would take minutes)
    with pytest.raises(RuntimeError, match="not finished"):
        watched.streams[-1].reply  # noqa: B018


@pytest.mark.slow
def test_several_streams_progress_together_and_other_endpoints_answer(live):
    url, _, _ = live
    body = {"messages": [{"role": "user", "content": "Write a poem about rivers."}], "max_tokens": 16, "temperature": 0}
    firsts: dict[int, float] = {}
    ends: dict[int, float] = {}
    health: list[float] = []

    async def one(http: httpx.AsyncClient, i: int) -> None:
        async with http.stream("POST", f"{url}/v1/chat/completions", json={**body, "stream": True}) as r:
            async for line in r.aiter_lines():
                if i not in firsts and '"content":"' in line and '"content":""' not in line:
                    firsts[i] = time.perf_counter()
        ends[i] = time.perf_counter()

    async def probe(http: httpx.AsyncClient) -> None:
        while len(firsts) < 3 and not ends:
            await asyncio.sleep(0.01)
        r = await http.get(f"{url}/health")
        assert r.status_code == 200
        health.append(time.perf_counter())

    async def main() -> None:
        async with httpx.AsyncClient(timeout=120) as http:
            await asyncio.gather(*(one(http, i) for i in range(3)), probe(http))

    asyncio.run(main())
    assert len(firsts) == 3
    assert max(firsts.values()) < min(ends.values())  # every stream had text before any had finished
    assert health[0] < min(ends.values())  # /health answered while all three were generating


# ----------------------------------------------------------------------------------------------
# The responder seam, and a full queue
# ----------------------------------------------------------------------------------------------
class Templated:
    """A responder that grounds the conversation and stands a template in for the model's reply."""

    name, context_tokens = "assistant", 512

    def __init__(self) -> None:
        self.seen: list[list[dict]] = []

    def respond(self, messages, config, stop) -> ChatStream:
        grounded = [{"role": "system", "content": "Intent: set_alarm."}, *messages]
        self.seen.append(grounded)
        return ChatStream.of_text("Your alarm is set for 7:00.", ChatPrompt(ids=[0] * 11), completion_tokens=9)


def test_a_responder_may_rewrite_the_messages_and_replace_the_reply():
    responder = Templated()
    app = create_app(_settings(), backends=lambda s: [ChatBackend(responder)])
    with TestClient(app) as c:
        body = {"model": "assistant", "messages": [{"role": "developer", "content": "be kind"}, *QUESTION]}
        answer = c.post("/v1/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "Your alarm is set for 7:00."
        assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}
        assert responder.seen[0][:2] == [
            {"role": "system", "content": "Intent: set_alarm."},
            {"role": "system", "content": "be kind"},  # developer is read as system
        ]
        events = _stream(c, body)
        assert [c["choices"][0]["delta"].get("content") for c in events[1:-2]] == ["Your alarm is set for 7:00."]


class Blocking:
    name, context_tokens = "slow", 64

    def __init__(self) -> None:
        self.release = threading.Event()

    def respond(self, messages, config, stop) -> ChatStream:
        self.release.wait(10)
        return ChatStream.of_text("done", ChatPrompt(ids=[0]), completion_tokens=1)


def test_a_full_chat_queue_answers_429_with_retry_after():
    responder = Blocking()

    async def main() -> ChatError:
        backend = ChatBackend(responder, max_streams=1, max_waiting=1)
        config = GenerationConfig(max_new_tokens=1)
        running = [backend.start(QUESTION, config, (), pieces=False) for _ in range(2)]
        with pytest.raises(ChatError) as refused:
            backend.start(QUESTION, config, (), pieces=False)
        responder.release.set()
        for job in running:
            assert (await job.next())[0] == "prompt"
        await backend.stop(5)
        return refused.value

    error = asyncio.run(main())
    assert error.status == 429 and error.headers["Retry-After"] and "1 chat requests are waiting" in error.message


# ----------------------------------------------------------------------------------------------
# Schema fuzz: a tiny random decoder on SmolLM2's tokenizer, no 500 and always the envelope
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_chat_endpoint_survives_schema_fuzzing(smol):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.python import asgi

    from megasense.config import HeadConfig
    from megasense.config.presets import llama_tiny
    from megasense.formats.release import LoadedModel
    from megasense.models import GPTModel

    torch.manual_seed(0)
    config = llama_tiny().replace(vocab_size=smol.tokenizer.vocab_size, max_position_embeddings=128)
    model = GPTModel(config)
    model.init_weights()
    tiny = LoadedModel(
        model=model.eval(), config=config, head=HeadConfig(task="causal_lm"), tokenizer=smol.tokenizer, path="t",
        metadata={},
    )  # fmt: skip
    backend = ChatBackend(ModelResponder("tiny-chat", TextGenerator(tiny)))
    app = create_app(_settings(max_texts_per_request=16, max_body_bytes=100_000), backends=lambda s: [backend])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        (operation,) = [
            r.ok() for r in schema.get_all_operations() if r.ok().path == "/v1/chat/completions"
        ]  # fmt: skip
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(max_examples=25, deadline=10_000, suppress_health_check=list(HealthCheck), database=None)
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case) -> None:
                response = case.call(timeout=30)
                assert response.status_code < 500, (case.body, response.text)
                if response.status_code >= 400:
                    assert set(response.json()) == {"error"}, response.text

            fuzz()
    finally:
        asgi.shutdown_lifespans()
