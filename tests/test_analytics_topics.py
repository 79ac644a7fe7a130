"""TopicModel and its parts: segmentation, class-based TF-IDF, labels, pluggable steps, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score

from _analytics_fakes import FakeEmbedder, chinese_rows, english_rows
from megasense.analytics.represent import class_tfidf, key_phrases, readable_label, top_terms
from megasense.analytics.steps import AutoKMeans, default_reducer
from megasense.analytics.text import Segmenter, detect_language
from megasense.analytics.topics import TopicModel


def test_segmenter_english_drops_stop_words_noise_and_keeps_clause_bigrams():
    terms = Segmenter()("The battery life is great, see https://x.com/a @bob 2024!")
    assert terms == ["battery", "life", "great", "battery life", "life great"]


def test_segmenter_reads_literal_unicode_escapes():
    terms = Segmenter()(r"Plus\u002c tomorrow is busy\u002c Somebody\u2019s debate")
    assert not any("u002c" in t or "u2019" in t for t in terms)
    assert "somebody" in terms and "tomorrow busy" in terms and "busy somebody" not in terms  # the comma splits


def test_segmenter_chinese_uses_jieba_and_chinese_stop_words():
    terms = Segmenter()("配送速度很快，味道也不错")
    assert {"配送", "速度", "味道", "不错"} <= set(terms)
    assert "配送速度" in terms  # a Chinese pair is joined without a space
    assert "很" not in terms and "也" not in terms
    assert not any("快味" in t for t in terms)  # no pair across the comma


@pytest.mark.parametrize("text", ["https://example.com/x", "😀🎉👍", "12345 !!!", "", "the and of"])
def test_texts_without_words_give_no_terms(text):
    assert Segmenter()(text) == []


def test_detect_language():
    assert detect_language(["good food", "slow delivery"]) == "en"
    assert detect_language(["很好吃", "送餐太慢了", "good"]) == "mixed"
    assert detect_language(["很好吃", "送餐太慢了", "房间很干净"]) == "zh"
    assert detect_language(["😀", "http://x.y"]) == "en"


def test_class_tfidf_matches_the_formula():
    X = sparse.csr_matrix(np.array([[2, 0, 1], [0, 1, 1], [0, 3, 1]]))
    ids, W = class_tfidf(X, np.array([0, 1, 1]))
    assert ids.tolist() == [0, 1]
    tf = np.array([[2, 0, 1], [0, 4, 2]], dtype=float)
    average = tf.sum() / 2
    expected = tf / tf.sum(axis=1, keepdims=True) * np.log1p(average / tf.sum(axis=0))
    np.testing.assert_allclose(W.toarray(), expected)
    assert top_terms(W, 0, ["a", "b", "c"], 2) == [("a", pytest.approx(expected[0, 0])), ("c", expected[0, 2])]


def test_readable_label_prefers_word_pairs_over_their_words():
    assert readable_label(["battery", "battery life", "charger", "life", "screen"]) == (
        "battery life · charger · screen"
    )
    assert readable_label([]) == "(no words)"


def test_key_phrases_contrast_praise_with_complaints():
    texts = ["great battery", "great battery", "bad battery", "bad battery", "great screen", "bad screen"]
    segmenter = Segmenter(bigrams=False)
    vectorizer_terms = sorted({w for t in texts for w in segmenter(t)})
    X = sparse.csr_matrix([[segmenter(t).count(w) for w in vectorizer_terms] for t in texts])
    phrases = key_phrases(
        X,
        np.zeros(6, int),
        ["positive", "positive", "negative", "negative", "positive", "negative"],
        vectorizer_terms,
        min_docs=2,
    )
    assert phrases[0]["positive"] == ["great"]
    assert phrases[0]["negative"] == ["bad"]


def _english(n=150):
    rows = english_rows(n)
    return [r["text"] for r in rows], [r["truth"] for r in rows]


def test_topic_model_recovers_planted_topics_and_reads_them():
    texts, truth = _english()
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=10)
    topics = model.fit_transform(texts)
    assert normalized_mutual_info_score(truth, topics) > 0.95
    assert set(model.topic_ids_.tolist()) == {0, 1, 2}
    sizes = [t.size for t in model.topics_ if t.id >= 0]
    assert sizes == sorted(sizes, reverse=True)  # numbered by size
    for topic in model.topics_:
        planted = {truth[i] for i in np.flatnonzero(topics == topic.id)}
        assert len(planted) == 1
        top_words = [w for w, _ in topic.terms[:3]]
        assert set(top_words) & set(
            {
                "battery": ["battery", "charge", "charger", "power", "hours"],
                "delivery": ["delivery", "courier", "package", "shipping", "arrived"],
                "screen": ["screen", "display", "pixels", "brightness", "colour"],
            }[planted.pop()]
        )
        assert len(topic.representative) == 3 and all(r in texts for r in topic.representative)
    info = model.topic_info()
    assert list(info.columns) == ["topic", "label", "size", "terms", "representative"]
    assert info["size"].sum() == len(texts)


def test_fitted_state_ends_in_underscore_and_transform_uses_it():
    texts, truth = _english()
    embedder = FakeEmbedder()
    model = TopicModel(embedder, reducer_kind="pca", min_topic_size=10).fit(texts)
    public = {k for k in vars(model) if not k.startswith("_")}
    assert {"embedder", "reducer", "clusterer", "vectorizer", "seed"} <= public
    assert {"centroids_", "thresholds_", "topic_ids_", "topics_", "labels_", "vocabulary_"} <= public
    fresh = ["the charger and battery power great", "courier package arrived bad", "😀😀", "pixels display brightness"]
    topics = model.transform(fresh)
    by_truth = {t: model.labels_[truth.index(t)] for t in ("battery", "delivery", "screen")}
    assert topics.tolist() == [by_truth["battery"], by_truth["delivery"], -1, by_truth["screen"]]


def test_duplicates_are_embedded_and_clustered_once():
    texts, _ = _english(60)
    embedder = FakeEmbedder()
    model = TopicModel(embedder, reducer_kind="pca", min_topic_size=5)
    topics = model.fit_transform(texts * 3)
    assert len(embedder.seen) == len(set(texts))
    assert topics[: len(texts)].tolist() == topics[len(texts) : 2 * len(texts)].tolist()


class _Recorder:
    """A reducer that is not from scikit-learn: anything with fit/transform is a step."""

    def __init__(self):
        self.fitted = 0

    def fit(self, X, y=None):
        self.fitted += 1
        self.mean_ = X.mean(axis=0)
        return self

    def transform(self, X):
        return X - self.mean_


def test_steps_are_pluggable():
    texts, truth = _english()
    reducer = _Recorder()
    model = TopicModel(FakeEmbedder(), reducer=reducer, clusterer=AutoKMeans(3, seed=0))
    topics = model.fit_transform(texts)
    assert reducer.fitted == 1
    assert model.reducer_ is reducer
    assert normalized_mutual_info_score(truth, topics) > 0.95
    assert (topics >= 0).all()  # k-means leaves no outliers


def test_auto_kmeans_picks_the_number_of_groups():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=400, centers=4, cluster_std=0.5, random_state=0)
    km = AutoKMeans(min_topic_size=10, seed=0).fit(X)
    assert km.n_clusters_ == 4
    assert km.n_clusters_ == max(km.silhouettes_, key=km.silhouettes_.get)
    assert normalized_mutual_info_score(y, km.labels_) > 0.99


def test_default_reducer_falls_back_to_pca_for_small_corpora():
    assert isinstance(default_reducer("auto", 40, 384), PCA)
    assert default_reducer("pca", 5000, 384).n_components == 50
    with pytest.raises(ValueError, match="expected one of auto, umap, pca"):
        default_reducer("tsne", 100, 10)


def test_single_document_and_all_duplicates_make_one_topic():
    model = TopicModel(FakeEmbedder())
    assert model.fit_transform(["the battery died after two hours"]).tolist() == [0]
    assert any("too few" in w for w in model.warnings_)
    assert model.topics_[0].label.startswith("0: ")
    same = TopicModel(FakeEmbedder()).fit_transform(["same old post"] * 40)
    assert set(same.tolist()) == {0}


def test_wordless_documents_are_outliers_and_an_all_wordless_corpus_still_fits():
    texts, _ = _english(60)
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=5)
    topics = model.fit_transform([*texts, "https://t.co/abc", "🎉🎉"])
    assert topics[-2:].tolist() == [-1, -1]
    empty = TopicModel(FakeEmbedder())
    assert empty.fit_transform(["😀", "http://a.b", "123"]).tolist() == [-1, -1, -1]
    assert any("no document holds any words" in w for w in empty.warnings_)


def test_chinese_topics_with_jieba_keywords():
    rows = chinese_rows(60)
    texts = [r["text"] for r in rows]
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=8)
    topics = model.fit_transform(texts)
    assert normalized_mutual_info_score([r["truth"] for r in rows], topics) > 0.9
    words = {w for t in model.topics_ for w, _ in t.terms}
    assert {"外卖", "酒店"} & words and "很" not in words


def test_save_and_load_round_trip_without_pickle(tmp_path):
    texts, _ = _english()
    embedder = FakeEmbedder()
    model = TopicModel(embedder, reducer_kind="pca", min_topic_size=10).fit(texts)
    model.save(tmp_path / "m", metadata={"embedding_model": "fake"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["topics.json", "topics.safetensors"]
    assert json.loads((tmp_path / "m" / "topics.json").read_text())["format"] == "megasense-topic-model"
    loaded = TopicModel.load(tmp_path / "m", embedder=embedder)
    fresh = ["charger power hours", "shipping courier", "brightness colour pixels", "🎉"]
    assert loaded.transform(fresh).tolist() == model.transform(fresh).tolist()
    assert [t.label for t in loaded.topics_] == [t.label for t in model.topics_]
    assert loaded.metadata_ == {"embedding_model": "fake"}
    with pytest.raises(Exception, match="already exists"):
        model.save(tmp_path / "m")


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        TopicModel().transform(["x"], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="needs embeddings"):
        TopicModel().fit(["a text"])
    with pytest.raises(ValueError, match=r"shape \(2, 4\) for 3 texts"):
        TopicModel().fit(["a", "b", "c"], np.zeros((2, 4)))
    with pytest.raises(TypeError, match="text 1 is a int"):
        TopicModel(FakeEmbedder()).fit(["ok", 3])
    texts, _ = _english(60)
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=5).fit(texts)
    with pytest.raises(ValueError, match="dimension 8 for a model fitted on dimension 32"):
        model.transform(["x"], np.ones((1, 8)))
    with pytest.raises(ValueError, match="not a readable megasense topic model"):
        TopicModel.load(tmp_path)


def test_analytics_imports_without_torch_or_models():
    import subprocess
    import sys

    code = (
        "import sys, megasense.analytics, megasense.analytics.report, megasense.analytics.dashboard; "
        "heavy = ('torch', 'megasense.inference', 'megasense.formats.convert'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
