"""Study summaries over fake models (fast): splitting, reported speech, centrality, the support check, styles,
map-reduce over long texts, documents (HTML, PDF), tables, the command line and ``POST /v1/summarize``; and once
with the embedded models (slow)."""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from megasense.cli.main import _register, app
from megasense.errors import MegasenseInputError
from megasense.summaries import summarizer as summarizer_module
from megasense.summaries.dialogue import report, reported_sentences
from megasense.summaries.extract import (
    LEXICAL_SUPPORT,
    centrality,
    check_support,
    defining_unit,
    key_phrases,
    lexical_support,
    select_central,
)
from megasense.summaries.jobs import classify_input, summarize_table
from megasense.summaries.sources import html_to_text, read_document
from megasense.summaries.summarizer import Summarizer
from megasense.summaries.text import (
    chunk_units,
    count_words,
    cut_to_words,
    detect_lang,
    is_dialogue,
    split_sections,
    split_sentences,
    split_turns,
)

LECTURE = (
    "Photosynthesis is the process plants use to make glucose from light. "
    "Chlorophyll in the chloroplasts absorbs the light that photosynthesis needs. "
    "The glucose made by photosynthesis stores chemical energy for the plant. "
    "Oxygen is released into the air as a by-product of photosynthesis. "
    "Dr. Smith's lab in Paris studies how cold weather slows photosynthesis in wheat."
)


class BagOfWords:
    """A stand-in sentence encoder: hashed word counts (4-letter prefixes, so plurals meet), L2-normalised."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 512))
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z]{3,}|[\u4e00-\u9fff]", text.lower()):
                out[i, zlib.crc32(word[:4].encode()) % 512] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


class FakeGenerator:
    """A stand-in decoder: replies in order; its tokenizer counts words."""

    def __init__(self, *replies: str, metadata: dict | None = None) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict]] = []
        self.tokenizer = SimpleNamespace(encode=lambda text, add_special_tokens=False: text.split())
        self.loaded = SimpleNamespace(metadata=metadata or {})

    def chat(self, messages, config):
        self.calls.append(messages)
        text = self.replies.pop(0) if self.replies else "Nothing."
        return SimpleNamespace(text=text, finish_reason="stop")


def make(generator=None, **options) -> Summarizer:
    embedder = BagOfWords()
    return Summarizer(generator, {"en": embedder, "zh": embedder}, **options)


# ----------------------------------------------------------------------------------------------
# Text units
# ----------------------------------------------------------------------------------------------
def test_sentences_turns_sections_and_words():
    sentences = split_sentences(LECTURE)
    assert len(sentences) == 5 and sentences[-1].startswith("Dr. Smith's lab")  # no split after "Dr."
    assert split_sentences("水运工程很重要.针对这些问题，采用全过程管理。效果好！", "zh") == [
        "水运工程很重要.",
        "针对这些问题，采用全过程管理。",
        "效果好！",
    ]
    dialogue = "#Person1#: Hi. How are you?\n#Person2#: Fine, thanks.\nI mean it.\n#Person1#: Good."
    assert is_dialogue(dialogue) and not is_dialogue(LECTURE)
    assert split_turns(dialogue)[1] == "#Person2#: Fine, thanks. I mean it."
    assert split_sections("# A\ntext a\n\n## B\ntext b") == ["# A\ntext a", "## B\ntext b"]
    assert count_words("two words 和三个字") == 6
    assert detect_lang("这是中文") == "zh" and detect_lang("English") == "en" and detect_lang("x", "zh") == "zh"
    with pytest.raises(ValueError, match="lang='fr'"):
        detect_lang("x", "fr")


def test_cutting_to_words_and_chunking_by_tokens():
    kept, cut = cut_to_words(["one two three.", "four five six."], 4)
    assert kept == ["one two three."] and cut == 3
    kept, cut = cut_to_words(["one two three four five six."], 3)
    assert kept == ["one two three…"] and cut == 3
    count = lambda text: len(text.split())  # noqa: E731
    chunks = chunk_units(["a b c", "d e", "f g h i", "j " * 20], count, budget=6)
    assert [c.units for c in chunks[:2]] == [("a b c", "d e"), ("f g h i",)]
    assert chunks[-1].cut and count(chunks[-1].units[0]) <= 6  # one unit longer than a prompt: cut, and flagged


def test_reported_speech_names_the_speakers_and_skips_questions():
    assert report("I've been having trouble breathing lately.", "#Person2#", "#Person1#") == (
        "#Person2# has been having trouble breathing lately."
    )
    assert report("I will send you to a specialist for tests.", "#Person1#", "#Person2#") == (
        "#Person1# will send #Person2# to a specialist for tests."
    )
    assert report("I need to stop eating junk food.", "#Person1#", "#Person2#") == (
        "#Person1# needs to stop eating junk food."
    )
    assert report("Do you have any allergies at all?", "#Person1#", "#Person2#") is None
    assert report("Thank you.", "#Person1#", "#Person2#") is None
    turns = split_turns("#Person1#: Are you ready?\n#Person2#: I am ready for my exam today.")
    assert [(r.text, r.turn) for r in reported_sentences(turns)] == [
        ("#Person2# is ready for #Person2#'s exam today.", 1)
    ]


# ----------------------------------------------------------------------------------------------
# The encoder's part
# ----------------------------------------------------------------------------------------------
def test_centrality_prefers_the_sentence_most_like_the_others():
    units = split_sentences(LECTURE)
    vectors = BagOfWords().embed(units)
    scores = centrality(vectors)
    assert scores.argmin() == 4 and abs(scores.sum() - 1) < 1e-6  # the off-topic sentence about a lab
    picked = select_central(units, vectors, max_words=25)
    assert picked == sorted(picked) and 4 not in picked
    assert sum(count_words(units[i]) for i in picked) <= 25


def test_support_check_and_key_terms():
    units = split_sentences(LECTURE)
    checks = check_support(
        ["Plants make glucose from light by photosynthesis.", "Mars has two small moons."],
        units,
        BagOfWords(),
        threshold=0.3,
    )
    assert [c.supported for c in checks] == [True, False] and checks[0].source == 0
    assert lexical_support("Chlorophyll absorbs light that photosynthesis needs.", LECTURE) == 1.0
    assert lexical_support("Photosystem II catalyses the reduction of NADP by ferredoxin.", LECTURE) < LEXICAL_SUPPORT
    phrases = key_phrases(LECTURE, "en", BagOfWords(), k=3)
    assert "photosynthesis" in phrases
    assert defining_unit("photosynthesis", units) == 0  # "Photosynthesis is ..." defines it
    assert defining_unit("glucose", units) == 0 and defining_unit("nitrogen", units) is None


# ----------------------------------------------------------------------------------------------
# The summarizer
# ----------------------------------------------------------------------------------------------
def test_brief_keeps_supported_generated_sentences_and_drops_the_rest():
    generator = FakeGenerator("Plants make glucose from light by photosynthesis. Mars has two small moons.")
    summary = make(generator).summarize(LECTURE, style="brief", max_words=30)
    assert summary.method == "generated"
    assert summary.text == "Plants make glucose from light by photosynthesis."
    assert summary.dropped == ["Mars has two small moons."]
    prompt = generator.calls[0][-1]["content"]
    assert "at most 30 words" in prompt and "Dr. Smith" in prompt  # the worked example came first
    assert generator.calls[0][1]["role"] == "user" and generator.calls[0][2]["role"] == "assistant"


def test_nothing_supported_falls_back_to_the_central_sentences_and_says_so():
    summary = make(FakeGenerator("Mars has two small moons.")).summarize(LECTURE, style="brief", max_words=20)
    assert summary.method == "extracted" and summary.text and summary.text in LECTURE
    assert any("no generated sentence was supported" in n for n in summary.notes)


def test_a_long_text_is_summarized_in_parts_then_together():
    long_text = " ".join([LECTURE] * 6)
    generator = FakeGenerator(*["Photosynthesis makes glucose from light in plants."] * 40)
    summary = make(generator, prompt_tokens=40, preselect_words=200).summarize(long_text, style="brief", max_words=40)
    assert summary.chunks > 1 and len(generator.calls) > 2
    assert any("summarized in" in n and "parts" in n for n in summary.notes)
    assert summary.text == "Photosynthesis makes glucose from light in plants."  # a repeat is kept once


def test_max_words_cut_is_reported():
    summary = make().summarize(LECTURE, style="brief", max_words=5, method="extract")
    assert summary.words <= 6 and summary.text.endswith("…") and any("beyond max_words=5" in n for n in summary.notes)


def test_study_notes_have_every_section():
    generator = FakeGenerator(
        "Photosynthesis makes glucose from light.",
        "- Chlorophyll absorbs light for photosynthesis.\n- Oxygen is released by photosynthesis.\n- Bananas are blue.",
        "What absorbs the light that photosynthesis needs?",
        "Nothing at all",
    )
    summary = make(generator).summarize(LECTURE, style="study")
    text = summary.text
    for heading in ("## Summary", "## Key points", "## Key terms", "## Review questions"):
        assert heading in text
    assert "Bananas are blue." in summary.dropped
    assert summary.questions[0] == "What absorbs the light that photosynthesis needs?"
    assert any(t.term == "Photosynthesis" and t.definition.startswith("Photosynthesis is") for t in summary.key_terms)
    assert "1. What absorbs" in text and "**Photosynthesis**" in text


def test_chinese_defaults_to_extraction_and_bullets_are_a_list():
    text = "光合作用是植物利用光制造葡萄糖的过程。叶绿素吸收光。光合作用释放氧气。巴黎有一个实验室。"
    summary = make(FakeGenerator()).summarize(text, style="bullets", max_words=20)
    assert summary.lang == "zh" and summary.method == "extracted"
    assert summary.text.startswith("- ") and all(p in text for p in summary.key_points)


def test_a_pair_fine_tuned_decoder_is_asked_as_it_was_trained():
    generator = FakeGenerator("Plants make glucose from light.", metadata={"task": "generate"})
    make(generator).summarize(LECTURE, style="brief")
    assert len(generator.calls[0]) == 1 and generator.calls[0][0]["content"].startswith("Summarize the text.\n\n")


def test_bad_requests_are_refused_by_name():
    summarizer = make()
    with pytest.raises(MegasenseInputError, match="style='essay'"):
        summarizer.summarize(LECTURE, style="essay")
    with pytest.raises(MegasenseInputError, match="empty"):
        summarizer.summarize("   ")
    with pytest.raises(MegasenseInputError, match="needs a decoder"):
        summarizer.summarize(LECTURE, method="generate")
    with pytest.raises(MegasenseInputError, match="strategy='fast'"):
        make(FakeGenerator()).summarize(LECTURE, strategy="fast")


# ----------------------------------------------------------------------------------------------
# Documents and tables
# ----------------------------------------------------------------------------------------------
def _pdf(path: Path, lines: list[str]) -> Path:
    """A one-page PDF with ``lines`` of Helvetica text (objects and the xref table written out by hand)."""
    stream = "BT /F1 12 Tf 72 720 Td " + " ".join(f"({line}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def test_documents_html_pdf_and_bad_files(tmp_path):
    pytest.importorskip("bs4")
    pytest.importorskip("pypdf")
    html = (
        "<html><head><style>p{}</style><script>var x</script></head><body><nav>Home | About</nav>"
        "<article><h1>Light</h1><p>Plants <b>use</b> light.</p><ul><li>Chlorophyll absorbs it.</li></ul></article>"
        "<footer>(c) 2026</footer></body></html>"
    )
    assert html_to_text(html) == "# Light\n\nPlants use light.\n\n- Chlorophyll absorbs it."
    pdf = read_document(_pdf(tmp_path / "notes.pdf", ["Photosynthesis makes glucose.", "Plants release oxygen."]))
    assert pdf.kind == "pdf" and "Photosynthesis makes glucose." in pdf.text and "oxygen" in pdf.text
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(MegasenseInputError, match=r"broken\.pdf"):
        read_document(tmp_path / "broken.pdf")
    with pytest.raises(MegasenseInputError, match="no such file"):
        read_document(tmp_path / "missing.md")
    (tmp_path / "blank.txt").write_text("  \n", encoding="utf-8")
    with pytest.raises(MegasenseInputError, match="no text to summarize"):
        read_document(tmp_path / "blank.txt")
    assert classify_input("notes.pdf") == "document" and classify_input("rows.csv") == "table"
    assert classify_input("Plants use light. They make sugar.") == "text"


def test_table_gets_summary_columns_streamed_and_atomic(tmp_path):
    source = tmp_path / "docs.csv"
    pd.DataFrame({"text": [LECTURE, "", LECTURE], "summary": ["gold", "", "gold"]}).to_csv(source, index=False)
    seen = []
    result = summarize_table(
        make(),
        source,
        tmp_path / "out.csv",
        style="brief",
        max_words=15,
        method="extract",
        on_row=lambda row, text, summary: seen.append(row),
    )
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert list(out.columns) == ["text", "input_summary", "summary", "summary_notes"] and result.renamed
    assert out["summary"][0] and out["summary"][1] == "" and out["summary_notes"][1] == "empty text"
    assert seen == [2, 3, 4] and result.skipped_empty == [3] and result.extracted == 2
    with pytest.raises(Exception, match="no column 'body'"):
        summarize_table(make(), source, tmp_path / "bad.csv", text_col="body", method="extract")
    assert not (tmp_path / "bad.csv").exists() and not list(tmp_path.glob("*.tmp*"))


# ----------------------------------------------------------------------------------------------
# The command line and the service
# ----------------------------------------------------------------------------------------------
@pytest.fixture()
def fake_models(monkeypatch):
    generator = FakeGenerator(*["Plants make glucose from light by photosynthesis."] * 20)
    monkeypatch.setattr(
        summarizer_module, "load_summarizer", lambda model=None, **kw: make(generator if model else None)
    )
    return generator


def test_cli_summarizes_a_text_a_file_and_a_table(tmp_path, fake_models):
    _register()
    runner = CliRunner()
    brief = runner.invoke(app, ["summarize", LECTURE, "--style", "brief"])
    assert brief.exit_code == 0, brief.output
    assert "Plants make glucose from light by photosynthesis." in brief.stdout
    notes = tmp_path / "lecture.md"
    notes.write_text(LECTURE, encoding="utf-8")
    out = tmp_path / "notes.md"
    study = runner.invoke(app, ["summarize", str(notes), "--output", str(out)])
    assert study.exit_code == 0, study.output
    assert out.read_text(encoding="utf-8").startswith("## Summary")
    again = runner.invoke(app, ["summarize", str(notes), "--output", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    table = tmp_path / "rows.csv"
    pd.DataFrame({"body": [LECTURE, LECTURE]}).to_csv(table, index=False)
    written = tmp_path / "rows.out.jsonl"
    rows = runner.invoke(
        app, ["summarize", str(table), "--text-col", "body", "--style", "brief", "-o", str(written), "--no-progress"]
    )
    assert rows.exit_code == 0, rows.output
    assert len(pd.read_json(written, lines=True)["summary"]) == 2 and "summarized 2 rows" in rows.output


def test_cli_errors_are_one_line(tmp_path, fake_models):
    _register()
    runner = CliRunner()
    bad_style = runner.invoke(app, ["summarize", LECTURE, "--style", "essay"])
    assert bad_style.exit_code == 2 and "--style 'essay'" in " ".join(
        re.sub(r"[│╭╮╰╯─]", " ", bad_style.output).split()
    )
    missing = runner.invoke(app, ["summarize", str(tmp_path / "missing.pdf")])
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", missing.output).split())  # the error box wraps lines
    assert missing.exit_code == 2 and "no such file" in flat
    helped = runner.invoke(app, ["summarize", "--help"])
    assert helped.exit_code == 0 and "megasense summarize lecture.pdf" in helped.output


def test_service_summarize(monkeypatch):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from megasense.service import app as app_module
    from megasense.service.app import create_app
    from megasense.service.chat import ChatBackend
    from megasense.service.settings import ServiceSettings
    from test_service_assist import EchoResponder

    generator = FakeGenerator(*["Plants make glucose from light by photosynthesis."] * 5)
    monkeypatch.setattr(app_module, "load_summarizer", lambda settings: make(generator))
    settings = ServiceSettings(model="", embedding_model="", chat_model="smollm2-135m-instruct")
    with TestClient(create_app(settings, backends=lambda s: [ChatBackend(EchoResponder())])) as http:
        answer = http.post("/v1/summarize", json={"text": LECTURE, "style": "brief", "max_words": 30})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["text"] == "Plants make glucose from light by photosynthesis." and body["method"] == "generated"
        assert http.post("/v1/summarize", json={"text": LECTURE, "style": "essay"}).status_code == 422
        assert http.post("/v1/summarize", json={"text": ""}).status_code == 422
    with TestClient(create_app(ServiceSettings(model="", embedding_model=""), backends=lambda s: [])) as http:
        missing = http.post("/v1/summarize", json={"text": LECTURE})
    assert missing.status_code == 404 and "--chat-model" in missing.json()["error"]["message"]


# ----------------------------------------------------------------------------------------------
# The embedded models
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_embedded_models_write_checked_summaries():
    from megasense.summaries.summarizer import load_summarizer

    summarizer = load_summarizer()
    brief = summarizer.summarize(LECTURE, style="brief", max_words=40)
    assert brief.text and brief.words <= 40 and brief.method in ("generated", "extracted")
    chinese = summarizer.summarize(
        "光合作用是植物利用光能制造葡萄糖的过程。叶绿素吸收光能。", style="brief", max_words=20
    )
    assert chinese.lang == "zh" and chinese.method == "headline" and chinese.words <= 20


@pytest.mark.slow
def test_dialogsum_reported_speech_beats_lead():
    """On the first 24 DialogSum dev dialogues, the extractive summary in reported speech scores a higher ROUGE-L
    than the lead turns at the same budget (the full comparison is benchmarks/summaries.py)."""
    import csv

    from rouge_score import rouge_scorer

    from _shared import shared_path
    from megasense.summaries.summarizer import load_summarizer

    with open(shared_path("dialogsum-en/dev.csv"), encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:24]
    summarizer = load_summarizer(None)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    ours, lead = [], []
    for row in rows:
        summary = summarizer.summarize(row["dialogue"], style="brief", max_words=25)
        assert summary.method == "extracted"
        ours.append(scorer.score(row["summary"], summary.text)["rougeL"].fmeasure)
        first = " ".join(cut_to_words(split_turns(row["dialogue"]), 25)[0])
        lead.append(scorer.score(row["summary"], first)["rougeL"].fmeasure)
    assert np.mean(ours) > np.mean(lead)
