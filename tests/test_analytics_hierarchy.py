"""``--topics N`` merges along a valid topic tree; seed words pull their documents; seed files read clearly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import is_valid_linkage, linkage
from sklearn.metrics import normalized_mutual_info_score

from _analytics_fakes import FakeEmbedder, FakeScorer, english_rows, run_fake_analysis, sql, write_csv
from megasense.analytics import TopicModel
from megasense.analytics.guided import read_seed_topics
from megasense.analytics.hierarchy import cut, linkage_of, topic_map
from megasense.errors import MegasenseInputError


def _fit(rows, **options):
    model = TopicModel(FakeEmbedder(), reducer_kind="pca", min_topic_size=10, **options)
    return model, model.fit_transform([r["text"] for r in rows])


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_topics_n_gives_n_topics_along_a_valid_tree(n):
    rows = english_rows(300)
    fine, fine_labels = _fit(rows, clusterer_kind="kmeans")
    model, labels = _fit(rows, clusterer_kind="kmeans", n_topics=n)
    k = len(fine.topic_ids_)
    assert k > 5  # k-means over-splits the three true topics
    assert sorted(set(labels.tolist())) == list(range(n)) and len(model.topics_) == n
    tree = model.hierarchy_
    assert tree["leaf"].sum() == k and len(tree) == 2 * k - 1
    assert is_valid_linkage(linkage_of(tree)) and tree["parent"].isna().sum() == 1
    assert sorted(set(tree.loc[tree["leaf"], "topic"])) == list(range(n))
    # merging only joins whole fine topics: each fine topic's documents land in one merged topic
    for t in set(fine_labels.tolist()):
        assert len(set(labels[fine_labels == t].tolist())) == 1
    if n == 3:  # merged along embedding similarity, the three planted topics come back
        assert normalized_mutual_info_score([r["truth"] for r in rows], labels) > 0.95


def test_asking_for_more_topics_than_found_merges_nothing_and_says_so():
    model, labels = _fit(english_rows(150), n_topics=10)
    assert len(set(labels.tolist())) == 3 and any("fewer than the 10" in w for w in model.warnings_)


def test_cut_applies_the_first_merges_exactly():
    rng = np.random.default_rng(0)
    Z = linkage(rng.normal(size=(9, 4)), "average")
    for n in range(1, 10):
        groups = cut(Z, 9, n)
        assert len(set(groups.tolist())) == n and groups[0] == 0
    with pytest.raises(ValueError):
        cut(Z, 9, 0)


def test_topic_map_places_close_topics_close():
    centroids = np.array([[1.0, 0, 0], [0.95, 0.05, 0], [0, 0, 1.0]])
    got = topic_map(centroids, np.array([0, 1, 2]), np.array([5, 6, 7]), ["a", "b", "c"])
    xy = got[["x", "y"]].to_numpy()
    assert np.linalg.norm(xy[0] - xy[1]) < np.linalg.norm(xy[0] - xy[2]) / 5
    assert got["documents"].tolist() == [5, 6, 7]


def test_seed_words_pull_their_documents():
    rows = english_rows(150)
    seeds = [["battery", "charger", "power"]]
    model, labels = _fit(rows, seed_topics=seeds)
    seeded = [t.id for t in model.topics_ if t.seed]
    assert len(seeded) == 1 and model.topics_[seeded[0]].seed == seeds[0]
    members = [r for r, t in zip(rows, labels, strict=True) if t == seeded[0]]
    assert len(members) >= 15 and {r["truth"] for r in members} == {"battery"}
    # most documents holding two or more seed words are the seed's; a lower threshold pulls more, still all battery
    strong = [t for r, t in zip(rows, labels, strict=True) if sum(w in r["text"].split() for w in seeds[0]) >= 2]
    assert np.mean(np.array(strong) == seeded[0]) >= 0.6
    looser, loose_labels = _fit(rows, seed_topics=seeds, seed_threshold=0.15)
    pulled = [r for r, t in zip(rows, loose_labels, strict=True) if looser.topics_[t].seed]
    assert len(pulled) > len(members) and {r["truth"] for r in pulled} == {"battery"}
    unrelated, _ = _fit(rows, seed_topics=[["volcano", "glacier", "tundra"]])
    assert not any(t.seed for t in unrelated.topics_) and any("drew no document" in w for w in unrelated.warnings_)


def test_seed_topics_need_the_embedder():
    model = TopicModel(reducer_kind="pca", min_topic_size=10, seed_topics=[["battery"]])
    rows = english_rows(60)
    with pytest.raises(ValueError, match="embedder"):
        model.fit([r["text"] for r in rows], FakeEmbedder().embed([r["text"] for r in rows]))


def test_seed_files_toml_and_text(tmp_path):
    (tmp_path / "s.txt").write_text("battery charger, power  # the battery topic\n\n电池 充电\n", encoding="utf-8")
    assert read_seed_topics(tmp_path / "s.txt") == [["battery", "charger", "power"], ["电池", "充电"]]
    (tmp_path / "s.toml").write_text('battery = ["battery", "charger"]\nscreen = ["screen"]\n', encoding="utf-8")
    assert read_seed_topics(tmp_path / "s.toml") == [["battery", "charger"], ["screen"]]
    (tmp_path / "bad.toml").write_text('battery = "battery charger"\n', encoding="utf-8")
    with pytest.raises(MegasenseInputError, match=r"bad\.toml: key 'battery' holds 'battery charger'; expected a list"):
        read_seed_topics(tmp_path / "bad.toml")
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(MegasenseInputError, match="holds no seed words"):
        read_seed_topics(tmp_path / "empty.txt")
    with pytest.raises(MegasenseInputError, match="cannot read"):
        read_seed_topics(tmp_path / "missing.txt")


def test_analysis_stores_the_tree_and_map_and_the_model_keeps_them(tmp_path):
    from megasense.analytics.topics import TopicModel as Loaded

    source = write_csv(tmp_path / "in.csv", english_rows(240))
    (tmp_path / "seeds.txt").write_text("battery charger power\n", encoding="utf-8")
    defaults = {"reducer": "pca", "min_topic_size": 10, "clusterer": "kmeans", "report": False}
    result = run_fake_analysis(source, tmp_path / "out", defaults, n_topics=3, seed_topics=tmp_path / "seeds.txt")
    assert result.summary["topics"] == 3 and result.summary["settings"]["seed_topics"] == [
        ["battery", "charger", "power"]
    ]
    tree = sql(tmp_path / "out", "SELECT * FROM topic_tree ORDER BY node")
    assert is_valid_linkage(linkage_of(tree)) and set(tree.loc[tree["leaf"], "topic"]) == {0, 1, 2}
    mapped = sql(tmp_path / "out", "SELECT * FROM topic_map ORDER BY topic")
    assert mapped["topic"].tolist() == [0, 1, 2] and mapped["documents"].sum() == 240 - result.summary["outliers"]
    loaded = Loaded.load(tmp_path / "out" / "model")
    assert len(loaded.hierarchy_) == len(tree) and loaded.hierarchy_["distance"].tolist() == pytest.approx(
        tree["distance"].tolist()
    )


def test_cli_topics_and_seed_topics(tmp_path, monkeypatch, capsys):
    from megasense.analytics import analysis as pipeline
    from megasense.cli.main import main

    monkeypatch.setattr(pipeline, "_load_embedder", lambda name: FakeEmbedder())
    monkeypatch.setattr(pipeline, "_load_scorer", lambda name: FakeScorer())
    source = write_csv(tmp_path / "in.csv", english_rows(150))
    (tmp_path / "seeds.toml").write_text('battery = ["battery", "charger", "power"]\n', encoding="utf-8")
    args = ["analyze", str(source), "--reducer", "pca", "--min-topic-size", "10", "--no-progress", "--no-report"]
    with pytest.raises(SystemExit) as done:
        main([*args, "--out", str(tmp_path / "out"), "--topics", "2", "--seed-topics", str(tmp_path / "seeds.toml")])
    assert done.value.code in (0, None)
    assert "2 topics in 150 documents" in capsys.readouterr().out
    leaves = sql(tmp_path / "out", "SELECT count(*) AS n FROM topic_tree WHERE leaf")["n"].iloc[0]
    assert leaves == 4  # three clusters, one of them split by the seed, merged down to two
    (tmp_path / "bad.toml").write_text("battery = 3\n", encoding="utf-8")
    with pytest.raises(SystemExit) as bad:
        main([*args, "--out", str(tmp_path / "x"), "--seed-topics", str(tmp_path / "bad.toml")])
    assert bad.value.code == 2 and "key 'battery' holds 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as zero:
        main([*args, "--out", str(tmp_path / "y"), "--topics", "0"])
    assert zero.value.code == 2
