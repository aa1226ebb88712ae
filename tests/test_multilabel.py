"""Multi-label pools: answers as sets (``a|b``, lists), the one-vs-rest probe, the multi-label query
strategies, each tool's multiple-choice export read back, the errors, audit and simulate.

Gold answers: 3 well separated clusters (ham / eggs / spam) plus a second property, ``big``, true
where the first embedding coordinate is positive: each row has one or two classes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import clustered, vector_pool
from typer.testing import CliRunner

from fmal import api
from fmal.cli import app
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.multilabel import canonical, predicted_sets, split
from fmal.probe_multilabel import MultiLabelProbe, load_probe
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.session import Session

CLASSES = np.array(["ham", "eggs", "spam"])


def _gold(X: np.ndarray, y: np.ndarray) -> dict[str, str]:
    return {f"r{i}": "|".join(sorted({str(CLASSES[c])} | ({"big"} if X[i, 0] > 0 else set()))) for i, c in enumerate(y)}


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("ml")
    X, y = clustered(n=120, d=16, k=3, seed=1)
    vector_pool(d / "indexes", "p", X)
    return d / "indexes", _gold(X, y)


@pytest.fixture
def pool(tmp_path: Path, _template):
    src, gold = _template
    shutil.copytree(src, tmp_path / "indexes")
    return tmp_path / "indexes", gold


def _csv(path: Path, ids: list[str], gold: dict[str, str]) -> Path:
    pd.DataFrame({"id": ids, "label": [gold[i] for i in ids]}).to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- the canonical form


def test_canonical_form_sorts_and_dedups():
    assert canonical("spam|ham", "x") == "ham|spam"
    assert canonical(["spam", "ham", "spam"], "x") == "ham|spam"
    assert canonical([], "x") is None and canonical(" ", "x") is None
    assert split("ham|spam") == ["ham", "spam"]
    labels, p = predicted_sets(np.array([[0.9, 0.2, 0.6], [0.1, 0.3, 0.2]]), ["a", "b", "c"])
    assert labels.tolist() == ["a|c", "b"]  # a row names at least one class
    assert p[0] == pytest.approx(0.9 * 0.8 * 0.6)


# ----------------------------------------------------------------------------- the loop


def test_multilabel_loop_seed_import_query(pool, tmp_path):
    index_dir, gold = pool
    s1 = api.seed("p", 12, "kmeans", index_dir=index_dir, multi_label=True)
    assert Session(index_dir / "p").task == "multi-label"
    # answers in another order come back canonical
    shuffled = {i: "|".join(reversed(gold[i].split("|"))) for i in s1.ids}
    r = api.import_labels(_csv(tmp_path / "a.csv", s1.ids, shuffled), "p", "csv", index_dir=index_dir)
    assert r.added == 12 and Session(index_dir / "p").labels == {i: gold[i] for i in s1.ids}
    q = api.query("p", None, 6, "mean-margin", index_dir=index_dir)
    assert len(q.ids) == 6 and not set(q.ids) & set(s1.ids)
    assert all(set(split(lab)) <= {"ham", "eggs", "spam", "big"} for lab in q.picks["predicted_label"])
    probe = load_probe(index_dir / "p" / "probes" / f"round-{q.round:03d}.json", n_features=16)
    assert isinstance(probe, MultiLabelProbe) and sorted(probe.classes_) == ["big", "eggs", "ham", "spam"]
    # answers as a JSON list in JSONL
    lines = "".join(json.dumps({"id": i, "label": split(gold[i])}) + "\n" for i in q.ids)
    (tmp_path / "b.jsonl").write_text(lines)
    api.import_labels(tmp_path / "b.jsonl", "p", "jsonl", index_dir=index_dir)
    for strategy in ("max-entropy", "auto"):
        q = api.query("p", None, 6, strategy, index_dir=index_dir)
        assert len(q.ids) == 6
        api.import_labels({i: gold[i] for i in q.ids}, "p", index_dir=index_dir)
    assert q.info["probe_C"] > 0 and "stop_agreement" in q.info  # the stopping signal compares two multi-label probes
    assert Session(index_dir / "p").labels == {i: gold[i] for i in Session(index_dir / "p").labels}


def test_single_label_pool_given_several_classes_says_how_to_switch(pool, tmp_path):
    index_dir, gold = pool
    s1 = api.seed("p", 6, "kmeans", index_dir=index_dir)
    f = _csv(tmp_path / "a.csv", s1.ids, gold)
    multi = next(i for i in s1.ids if "|" in gold[i])
    with pytest.raises(LabelsError, match=f"id '{multi}'.*single-label; to make it multi-label pass --multi-label"):
        api.import_labels(f, "p", "csv", index_dir=index_dir)
    assert Session(index_dir / "p").labels == {}
    with pytest.raises(InvalidInputError, match="mean-margin' is for multi-label pools"):
        api.query("p", {i: gold[i].split("|")[0] for i in s1.ids}, 4, "mean-margin", index_dir=index_dir)
    r = api.import_labels(f, "p", "csv", index_dir=index_dir, multi_label=True)  # the switch
    assert r.added == 6 and Session(index_dir / "p").task == "multi-label"


def test_switch_keeps_single_labels_and_refuses_the_way_back(pool):
    index_dir, gold = pool
    s = Session(index_dir / "p")
    s.add_labels({"r0": "ham", "r1": "eggs"}, source="t")
    s.set_task("multi-label")  # each stored label is a one-class set: nothing rewritten
    assert Session(index_dir / "p").labels == {"r0": "ham", "r1": "eggs"}
    s.add_labels({"r2": "big|spam"}, source="t")
    with pytest.raises(LabelsError, match="cannot become single-label"):
        s.set_task("single-label")


def test_pipe_in_class_names_is_refused_in_multilabel_pools(pool):
    index_dir, _ = pool
    with pytest.raises(InvalidInputError, match=r"'a\|b' contain '\|'"):
        api.seed("p", 4, "kmeans", index_dir=index_dir, multi_label=True, classes="a|b,c")
    assert Session(index_dir / "p").task == "single-label"  # the failed command wrote nothing
    api.seed("p", 4, "kmeans", index_dir=index_dir, multi_label=True)
    with pytest.raises(InvalidInputError, match="contain"):
        api.declare_classes("p", "x|y,z", index_dir=index_dir)


def test_a_single_label_pool_with_pipe_class_names_keeps_working(pool, tmp_path):
    """A pool made before multi-label pools may already hold a class named "a|b": unchanged."""
    index_dir, _ = pool
    s = Session(index_dir / "p")
    s.add_labels({"r0": "a|b", "r1": "c"}, source="old")
    r = api.import_labels({"r2": "a|b"}, "p", index_dir=index_dir)
    assert r.added == 1 and Session(index_dir / "p").labels["r2"] == "a|b"


def test_softmax_strategies_are_refused_on_multilabel_pools(pool):
    index_dir, gold = pool
    s1 = api.seed("p", 8, "kmeans", index_dir=index_dir, multi_label=True)
    with pytest.raises(InvalidInputError, match="multi-label pool runs one of mean-margin, max-entropy, auto, random"):
        api.query("p", {i: gold[i] for i in s1.ids}, 4, "badge", index_dir=index_dir)


# ----------------------------------------------------------------------------- probe and strategies


def test_probe_handles_classes_with_only_positives_or_negatives():
    X, y = clustered(n=60, d=8, k=3, seed=2)
    labels = np.asarray([f"all|{CLASSES[c]}" for c in y])  # "all" on every row: no negative
    probe = MultiLabelProbe().fit(X, labels)
    assert probe.constant_ == ["all"]
    p = probe.predict_proba(X)
    assert p.shape == (60, 4) and (p[:, 0] > 0.9).all()
    assert (probe.predict(X) == labels).mean() > 0.9
    again = MultiLabelProbe.from_dict(json.loads(json.dumps(probe.to_dict())), n_features=8)
    np.testing.assert_allclose(again.predict_proba(X), p, rtol=1e-5)


def test_probe_cross_validates_c_with_enough_labels():
    X, y = clustered(n=200, d=8, k=3, seed=3)
    probe = MultiLabelProbe(random_state=1).fit(X, np.asarray(_gold(X, y).values()) if False else
                                                np.asarray(list(_gold(X, y).values())))
    assert not np.isnan(probe.cv_micro_f1_) and probe.cv_micro_f1_ > 0.8


def test_multilabel_measures_rank_the_boundary_first():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 0.99], [0.6, 0.65]])
    ctx = QueryContext(X=np.zeros((4, 2), np.float32), candidates=np.arange(4), proba=proba, classes=np.array(["a", "b"]),
                       labeled=np.zeros(0, np.int64))
    assert QUERY_STRATEGIES.get("mean-margin")(ctx, 2).indices.tolist() == [0, 3]
    assert set(QUERY_STRATEGIES.get("max-entropy")(ctx, 2).indices.tolist()) == {0, 2}


# ----------------------------------------------------------------------------- the tools, both ways


@pytest.fixture
def query_round(pool, tmp_path):
    """A multi-label pool with a labeled seed round and an open query round (with suggestions)."""
    index_dir, gold = pool
    s1 = api.seed("p", 12, "kmeans", index_dir=index_dir, multi_label=True)
    api.import_labels({i: gold[i] for i in s1.ids}, "p", index_dir=index_dir)
    q = api.query("p", None, 6, "mean-margin", index_dir=index_dir)
    return index_dir, gold, q


def test_label_studio_multiple_choice_both_ways(query_round, tmp_path):
    index_dir, gold, q = query_round
    res = api.export("p", q.round, "label-studio", index_dir=index_dir, output=tmp_path / "ls.json")
    config = (tmp_path / "ls.config.xml").read_text()
    assert 'choice="multiple"' in config and all(f'<Choice value="{c}"/>' in config for c in ("big", "eggs", "ham", "spam"))
    tasks = json.loads(res.output.read_text())
    sugg = {t["data"]["fmal_id"]: t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks}
    assert all(sugg[i] == split(lab) for i, lab in zip(q.ids, q.picks["predicted_label"]))
    for k, t in enumerate(tasks):  # Label Studio's JSON export: one annotation with the chosen list
        t["id"] = 100 + k
        choices = split(gold[t["data"]["fmal_id"]])[::-1]  # in any order
        t["annotations"] = [{"id": k + 1, "completed_by": 1, "was_cancelled": False,
                             "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": choices}}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    r = api.import_labels(tmp_path / "export.json", "p", index_dir=index_dir)
    assert r.format == "label-studio" and r.added == 6 and not r.skipped
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in q.ids} == {i: gold[i] for i in q.ids}


def test_prodigy_multiple_choice_both_ways(query_round, tmp_path):
    index_dir, gold, q = query_round
    res = api.export("p", q.round, "prodigy", index_dir=index_dir)
    tasks = [json.loads(line) for line in res.output.read_text().splitlines()]
    assert all(t["config"] == {"choice_style": "multiple"} for t in tasks)
    assert {o["id"] for o in tasks[0]["options"]} == {"big", "eggs", "ham", "spam"}
    for t in tasks:  # prodigy db-out: accept lists the chosen option ids
        t.update({"accept": split(gold[t["fmal_id"]]), "answer": "accept", "_input_hash": 1, "_task_hash": 2,
                  "_view_id": "choice", "_annotator_id": "ds-alex"})
    (tmp_path / "db-out.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    r = api.import_labels(tmp_path / "db-out.jsonl", "p", "prodigy", index_dir=index_dir)
    assert r.added == 6 and not r.skipped
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in q.ids} == {i: gold[i] for i in q.ids}


@pytest.fixture
def offline_argilla():
    """The real argilla client, its connection check off (no server): settings and records parse."""
    rg = pytest.importorskip("argilla")
    from unittest import mock

    from argilla._api import _client

    with mock.patch.object(_client.APIClient, "_validate_connection", lambda self: None):
        rg.Argilla._set_default(rg.Argilla(api_url="http://127.0.0.1:9", api_key="offline"))
        yield rg


def test_argilla_multilabel_question_both_ways(query_round, tmp_path, offline_argilla):
    import uuid

    from argilla.records._io import JsonIO

    rg = offline_argilla
    index_dir, gold, q = query_round
    res = api.export("p", q.round, "argilla", index_dir=index_dir, output=tmp_path / "a.json")
    settings = rg.Settings.from_json(tmp_path / "a.settings.json")
    question = settings.questions["label"]
    assert isinstance(question, rg.MultiLabelQuestion) and sorted(question.labels) == ["big", "eggs", "ham", "spam"]
    ds = rg.Dataset(name="fmal", settings=settings)
    recs = []
    for d in json.loads(res.output.read_text()):
        rec = rg.Record.from_dict(d, dataset=ds)
        assert rec.suggestions["label"].value == split(q.picks.set_index("id").loc[d["id"], "predicted_label"])
        rec.responses.add(rg.Response("label", split(gold[d["id"]]), user_id=uuid.UUID(int=7)))
        recs.append(rec)
    f = JsonIO.to_json(recs, tmp_path / "records.json")
    r = api.import_labels(f, "p", "argilla", index_dir=index_dir)
    assert r.added == 6 and not r.skipped
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in q.ids} == {i: gold[i] for i in q.ids}


def test_single_label_pool_reading_multiple_choices_says_how_to_switch(pool, tmp_path):
    index_dir, gold = pool
    s1 = api.seed("p", 4, "kmeans", index_dir=index_dir)
    tasks = [{"id": k, "data": {"text": "t", "fmal_id": i},
              "annotations": [{"id": k, "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                    "value": {"choices": ["ham", "big"]}}]}]} for k, i in enumerate(s1.ids)]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    with pytest.raises(LabelsError, match="none holds a usable answer.*4 answer\\(s\\) chose several classes and pool .p. is single-label: pass --multi-label"):
        api.import_labels(tmp_path / "ls.json", "p", index_dir=index_dir)
    r = api.import_labels(tmp_path / "ls.json", "p", index_dir=index_dir, multi_label=True)
    assert r.added == 4 and set(Session(index_dir / "p").labels.values()) == {"big|ham"}


def test_cli_multi_label_flag(pool, tmp_path):
    index_dir, gold = pool
    runner = CliRunner()
    out = runner.invoke(app, ["seed", "--pool", "p", "--budget", "10", "--strategy", "kmeans", "--index-dir", str(index_dir),
                              "--multi-label"])
    assert out.exit_code == 0, out.output
    ids = Session(index_dir / "p").rounds[-1]["ids"]
    f = _csv(tmp_path / "l.csv", ids, gold)
    out = runner.invoke(app, ["query", "--pool", "p", "--labels", str(f), "--budget", "3", "--strategy", "max-entropy",
                              "--index-dir", str(index_dir)])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["query", "--pool", "p", "--budget", "3", "--strategy", "margin", "--index-dir", str(index_dir)])
    assert out.exit_code != 0 and "multi-label pool runs one of" in out.output and "Traceback" not in out.output


# ----------------------------------------------------------------------------- audit


def test_audit_finds_flipped_multilabel_answers(tmp_path):
    X, y = clustered(n=150, d=16, k=3, seed=4)
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "p", X)
    gold = _gold(X, y)
    noisy = dict(gold)
    flipped = [f"r{i}" for i in range(0, 150, 15)]  # 10 answers: a wrong cluster class
    for i in flipped:
        cls = next(c for c in CLASSES if c not in split(gold[i]))
        noisy[i] = "|".join(sorted([cls] + [c for c in split(gold[i]) if c == "big"]))
    api.import_labels(noisy, "p", index_dir=index_dir, multi_label=True)
    res = api.audit("p", index_dir=index_dir, output=tmp_path / "audit.csv")
    table = res.audit.table
    assert set(table.columns) >= {"rank", "id", "given_label", "predicted_label", "label_quality", "is_issue"}
    top = set(table["id"].head(15))
    assert len(top & set(flipped)) >= 8  # most flips rank first
    assert set(res.audit.issues["id"]) & set(flipped)
    fixed = table.set_index("id").loc[flipped, "predicted_label"]
    assert (fixed == pd.Series({i: gold[i] for i in flipped})).mean() >= 0.8  # the suggestion is the right set
    assert (tmp_path / "audit.csv").exists()


# ----------------------------------------------------------------------------- simulate


def test_simulate_embeddings_multilabel_scores_micro_macro_and_subset():
    from fmal.simulate import simulate_embeddings

    X, y = clustered(n=300, d=16, k=3, seed=5)
    gold = np.asarray(list(_gold(X, y).values()))
    r = simulate_embeddings(X[:200], gold[:200], X[200:], gold[200:], multi_label=True, seeds=3, initial=10, step=10,
                            max_labels=40, strategies="random,typiclust+mean-margin,typiclust+max-entropy,auto")
    assert [s.name for s in r.strategies] == ["random", "typiclust+mean-margin", "typiclust+max-entropy", "auto"]
    assert {"accuracy", "macro_f1", "subset_accuracy"} <= set(r.curves.columns)
    assert r.info["task"] == "multi-label" and r.info["accuracy_is"] == "micro-F1"
    assert r.full_accuracy > 0.9 and r.info["full_data_subset_accuracy"] > 0.8
    assert r.classes == ["big", "eggs", "ham", "spam"]
    last = r.curves[r.curves.n_labels == 40]
    assert (last["accuracy"] > 0.6).all()  # learnable: micro-F1 well above chance at 40 labels
    assert all(not np.isnan(s.diff_lo) for s in r.summaries if s.strategy != "random")  # paired vs random
    with pytest.raises(InvalidInputError, match="'typiclust\\+margin'.*multi-label pool runs one of"):
        simulate_embeddings(X[:200], gold[:200], X[200:], gold[200:], multi_label=True, seeds=2, initial=10, step=10,
                            max_labels=20, strategies="typiclust+margin")


def _multilabel_csv(tmp_path: Path, n: int = 160) -> Path:
    """A small slice of the benchmarks' multi-label set (benchmarks/_multilabel_data.py)."""
    import importlib.util

    from conftest import BENCH_DATA, REPO

    spec = importlib.util.spec_from_file_location("_multilabel_data", REPO / "benchmarks" / "_multilabel_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    df = pd.read_csv(BENCH_DATA / "trec6.csv.gz", dtype=str)
    df = pd.concat([df[df.split == "train"].head(n), df[df.split == "test"].head(n // 2)])
    f = tmp_path / "trec6_ml.csv"
    mod.derive(df).to_csv(f, index=False)
    return f


def test_simulate_cli_on_a_multilabel_csv(tmp_path, tiny_model_dir):
    f = _multilabel_csv(tmp_path)
    assert pd.read_csv(f)["label"].str.contains("|", regex=False).any()
    common = [str(f), "--label-col", "label", "--test-col", "split", "--seeds", "2", "--initial", "10", "--step", "10",
              "--max", "30", "--index-dir", str(tmp_path / "ix"), "--model", str(tiny_model_dir)]
    out = CliRunner().invoke(app, ["simulate", *common])
    assert out.exit_code != 0 and "pass --multi-label to simulate a multi-label task" in out.output
    out = CliRunner().invoke(app, ["simulate", *common, "--multi-label", "--output", str(tmp_path / "sim")])
    assert out.exit_code == 0, out.output
    assert "full-data micro-F1" in out.output
    sim = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    assert [s["name"] for s in sim["strategies"]] == ["random", "typiclust+mean-margin", "typiclust+max-entropy", "auto"]
    assert "has_number" in sim["classes"] and "long" in sim["classes"]
    assert "subset_accuracy" in pd.read_csv(tmp_path / "sim" / "curves.csv").columns


def test_argilla_flat_records_map_through_log(query_round, tmp_path, offline_argilla):
    """The .jsonl records for Dataset.records.log: the suggestion of a MultiLabelQuestion is a list."""
    from argilla.records._mapping._mapper import IngestedRecordMapper

    from fmal.export.argilla import LOG_MAPPING

    rg = offline_argilla
    index_dir, _, q = query_round
    res = api.export("p", q.round, "argilla", index_dir=index_dir, output=tmp_path / "r.jsonl")
    settings = rg.Settings.from_json(tmp_path / "r.settings.json")
    mapper = IngestedRecordMapper(dataset=rg.Dataset(name="fmal", settings=settings), user_id=None, mapping=LOG_MAPPING)
    for line in res.output.read_text().splitlines():
        d = json.loads(line)
        assert isinstance(d["label"], list) and mapper(d).suggestions["label"].value == d["label"]


# ----------------------------------------------------------------------------- status, report, declared classes


def test_status_report_and_classes_outside_per_class(query_round, tmp_path):
    index_dir, gold, q = query_round
    assert api.status("p", index_dir=index_dir).task == "multi-label"
    out = CliRunner().invoke(app, ["status", "--pool", "p", "--index-dir", str(index_dir)])
    assert "multi-label" in out.output
    classes, outside = api.declare_classes("p", "ham,eggs,spam", index_dir=index_dir)
    assert outside == ["big"]  # per class named, not per answer ("big|ham" is not a class)
    r = api.import_labels({i: gold[i] for i in q.ids}, "p", index_dir=index_dir)
    assert set(r.outside) <= {"big"}
    rep = api.report("p", index_dir=index_dir, output=tmp_path / "r.md")
    assert set(rep.balance["class"]) == {"big", "eggs", "ham", "spam"}
    assert rep.balance["labeled"].sum() >= len(Session(index_dir / "p").labels)  # several classes a row


def test_majority_of_annotators_is_the_most_chosen_set(query_round, tmp_path):
    index_dir, _, q = query_round
    rid = q.ids[0]
    votes = pd.DataFrame({"id": [rid] * 3, "label": ["ham|big", "big|ham", "ham"], "annotator": ["a", "b", "c"]})
    votes.to_csv(tmp_path / "votes.csv", index=False)
    r = api.import_labels(tmp_path / "votes.csv", "p", "csv", index_dir=index_dir, on_conflict="majority")
    assert r.added == 1 and Session(index_dir / "p").labels[rid] == "big|ham"
    with pytest.raises(InvalidInputError, match="crowdlab weighs single-label answers"):
        api.import_labels(tmp_path / "votes.csv", "p", "csv", index_dir=index_dir, on_conflict="crowdlab")


def test_label_studio_json_min_multiple_choices(query_round, tmp_path):
    index_dir, gold, q = query_round
    recs = [{"id": k, "text": "t", "fmal_id": i, "label": {"choices": split(gold[i])}, "annotator": 1, "annotation_id": k}
            for k, i in enumerate(q.ids)]
    (tmp_path / "min.json").write_text(json.dumps(recs))
    r = api.import_labels(tmp_path / "min.json", "p", "label-studio", index_dir=index_dir)
    assert r.added == 6 and not r.skipped
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in q.ids} == {i: gold[i] for i in q.ids}
