"""Real training data and model selection: the label mapping and frozen dev parts, per-set scores, the selection
rule (the worst set decides), the abstain thresholds per category, out-of-domain abstention, and the shipped
model on the real dev sets (issue 16's targets)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from classifier.corpus import load_corpus, split
from classifier.evalsets import (EvalSet, best_candidate, corpus_sets, judge, real_sets, selection, shortfalls,
                                 worse_sets)
from classifier.model import CategoryModel, Prediction
from classifier.realdata import NLBSE_ACCEPTS, in_dev_part, nlbse_issues, s2r_reports
from classifier.steps import load_s2r
from classifier.taxonomy import CATEGORIES
from classifier.train import Candidate, Fitted, Labelled, class_cuts, training_mix
from classifier.workflow import real_examples, run_sets


@pytest.fixture(scope="module")
def sources() -> list[Any]:
    return [nlbse_issues(), s2r_reports()]


def test_nlbse_labels_map_onto_our_categories_and_count_as_right_in_their_own_labels(sources: list[Any]) -> None:
    nlbse = sources[0]
    assert len(nlbse.examples) == 1500 and Counter(e.label for e in nlbse.examples) == {
        "bug": 500, "feature": 500, "question": 500}
    assert dict(nlbse.trains_as) == {"bug": "incident", "feature": "feature_request", "question": "how_to"}
    assert nlbse.accepts["question"] == {"how_to", "configuration"} and nlbse.accepts["bug"] == {"incident", "outage"}
    assert not any("<!--" in e.text for e in nlbse.examples)  # issue templates' hidden instructions are dropped
    first = nlbse.examples[0]
    assert first.text.startswith("[DevTools Bug] Cannot add node") and first.group.startswith("facebook/react:")
    trained = real_examples(sources)
    assert {e.source for e in trained} == {"nlbse", "s2r"} and all(e.lang == "en" for e in trained)
    assert {e.category for e in trained if e.source == "s2r"} == {"incident"}


def test_dev_parts_are_frozen_by_group_so_templated_duplicates_stay_on_one_side(sources: list[Any]) -> None:
    nlbse, s2r = sources
    for source in sources:
        dev, fit = source.part(dev=True), source.part(dev=False)
        assert 0.25 < len(dev) / len(source.examples) < 0.35 and len(dev) + len(fit) == len(source.examples)
        assert not {e.group for e in dev} & {e.group for e in fit}
    templated = [e for e in nlbse.examples if "cannot add node" in e.group]
    assert len(templated) > 3 and len({in_dev_part(e.group, "nlbse") for e in templated}) == 1
    # the category model's S2R dev part is the steps model's held-out part: neither trains on the other's
    assert {e.id for e in s2r.part(dev=True)} == {e.id for e in load_s2r() if e.is_test}


def test_real_sources_count_their_share_of_our_own_mail() -> None:
    own = [Labelled(f"own {i}", "outage" if i < 2 else "billing", "de") for i in range(10)]
    real = [Labelled(f"issue {i}", "incident", "en", "nlbse") for i in range(4)]
    real += [Labelled(f"report {i}", "incident", "en", "s2r") for i in range(20)]
    train, weights = training_mix(own, real, {"nlbse": 0.5, "s2r": 0.1})
    assert len(train) == 34 and list(weights[:3]) == [2.0, 2.0, 1.0]  # outages count double
    assert weights[10:14].sum() == pytest.approx(5.0) and weights[14:].sum() == pytest.approx(1.0)
    assert training_mix(own, real, {})[0] == own


def eval_set(name: str = "nlbse-dev", real: bool = True, target: float = 0.78) -> EvalSet:
    truth = ("bug",) * 4 + ("question",) * 4 + ("feature",) * 2
    return EvalSet(name, tuple(f"text {i}" for i in range(10)), truth, NLBSE_ACCEPTS, real, target)


def predictions(categories: list[str], confidence: float = 0.9, abstained: bool = False) -> list[Prediction]:
    return [Prediction(c, confidence, abstained, ((c, confidence),), 0.5, "below-threshold" if abstained else "")
            for c in categories]


def test_a_set_scores_in_its_own_labels_with_its_sink_class_and_confusion() -> None:
    guessed = ["incident", "outage", "incident", "complaint", "how_to", "configuration", "complaint", "complaint",
               "feature_request", "incident"]
    scores = judge(eval_set(), predictions(guessed))
    assert scores["accuracy"] == 0.6 and scores["examples"] == 10 and scores["coverage"] == 1.0
    assert scores["largest_wrong_class"] == "complaint" and scores["largest_wrong_share"] == 0.3
    assert scores["confusion"] == {"labels": ["bug", "feature", "question", "complaint"],
                                   "matrix": [[3, 0, 0, 1], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 0, 0]]}
    routed = judge(eval_set(), predictions(guessed[:5], 0.9) + predictions(guessed[5:], 0.3, abstained=True))
    assert routed["coverage"] == 0.5 and routed["routed_precision"] == 0.8
    assert shortfalls({"nlbse-dev": scores}) == [
        "nlbse-dev: macro-F1 0.694 < 0.78", "nlbse-dev: routed precision 0.600 < 0.85",
        "nlbse-dev: complaint took 30.0% wrongly (> 15%)"]


def sets(**macro_f1: float) -> dict[str, dict[str, Any]]:
    targets = {"corpus_test": 0.907, "nlbse_dev": 0.78, "s2r_dev": 0.889}
    return {name.replace("_", "-"): {"macro_f1": f1, "target": targets[name], "real": name != "corpus_test",
                                     "largest_wrong_share": 0.05, "routed_precision": 0.9}
            for name, f1 in macro_f1.items()}


def test_the_candidate_whose_worst_set_is_best_wins_not_the_best_on_average() -> None:
    sharp = sets(corpus_test=0.97, nlbse_dev=0.70, s2r_dev=0.99)  # best on two sets and on average
    steady = sets(corpus_test=0.91, nlbse_dev=0.75, s2r_dev=0.95)  # worse on two sets, better on its worst
    assert best_candidate([sharp, steady]) == 1 and best_candidate([steady, sharp]) == 0
    assert selection(sharp) | {"rule": ""} == {"rule": "", "score": -0.08, "worst_set": "nlbse-dev"}
    # worst margins within 0.005 are a tie: the next-worst set decides
    close = sets(corpus_test=0.90, nlbse_dev=0.752, s2r_dev=0.99)
    assert best_candidate([close, steady]) == 1
    # a real set with a sink class loses against one without, however good its margins
    sinking = sets(corpus_test=0.95, nlbse_dev=0.79, s2r_dev=0.99)
    sinking["s2r-dev"]["largest_wrong_share"] = 0.2
    assert best_candidate([sinking, steady]) == 1


def test_promotion_compares_every_set_both_models_have() -> None:
    new, old = sets(corpus_test=0.93, nlbse_dev=0.74, s2r_dev=0.99), sets(corpus_test=0.91, nlbse_dev=0.75)
    assert worse_sets(new, old) == ["nlbse-dev 0.7400 < 0.7500"]
    assert worse_sets(old, old) == []


def fitted_stub(corpus_cut: float) -> Fitted:
    class Classes:
        classes_ = np.array(CATEGORIES)

    return Fitted(Candidate("x", "svm", {}), Classes(), corpus_cut, 0.0)  # type: ignore[arg-type]


def test_a_category_cut_is_raised_until_a_real_dev_set_is_routed_precisely_enough() -> None:
    confidences = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4, 0.35, 0.3]
    guessed = [Prediction("incident", c, False, (), 0.3) for c in confidences]
    right = np.array([1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    cuts = class_cuts(fitted_stub(0.3), [(guessed, right)])
    assert cuts["incident"] == 0.5  # seven of the first eight are right; any lower cut routes under 85 % right
    assert cuts["billing"] == 0.3  # never predicted there: the corpus cut stays
    few = class_cuts(fitted_stub(0.3), [(guessed[:5], right[:5])])
    assert few["incident"] == 0.3  # fewer than 10 predictions of a category say nothing


def test_shipped_model_holds_up_on_the_real_dev_sets(shipped_model: CategoryModel, sources: list[Any]) -> None:
    test_part = split(load_corpus())[1]
    runs = {r.eval_set.name: r.scores for r in run_sets(shipped_model, corpus_sets(test_part, CATEGORIES)
                                                        + real_sets(sources))}
    assert set(runs) == {"corpus-test", "corpus-test-de", "corpus-test-en", "corpus-test-nl", "nlbse-dev", "s2r-dev"}
    assert runs["s2r-dev"]["accuracy"] >= 0.8  # real bug reports classified incident or outage
    assert runs["nlbse-dev"]["macro_f1"] >= 0.74  # the issue's 0.78 is not reached (README, "The classifier")
    for name in ("nlbse-dev", "s2r-dev"):
        assert runs[name]["routed_precision"] >= 0.85 and runs[name]["largest_wrong_share"] <= 0.15
    assert shipped_model.metadata["sets"]["nlbse-dev"]["macro_f1"] == runs["nlbse-dev"]["macro_f1"]


@pytest.mark.parametrize(("text", "reason"), [
    ("Hi", "out-of-domain"), ("x7Gq 0ZpL 9vvR kkQ2 bb8w qq1z", "out-of-domain"), ("", "out-of-domain"),
    ("Impossible de se connecter depuis ce matin, merci de nous aider rapidement.", "unsupported-language"),
])
def test_mail_unlike_anything_seen_abstains_with_its_reason(shipped_model: CategoryModel, text: str,
                                                            reason: str) -> None:
    from classifier.language import detect_language

    (prediction,) = shipped_model.predict([text], languages=[detect_language(text)])
    assert prediction.abstained and prediction.abstain_reason == reason
    (confident,) = shipped_model.predict(["Rechnung falsch\nDie Rechnung 2026-0412 ging an die alte Adresse, bitte "
                                          "schicken Sie sie an unsere neue Anschrift."], languages=["de"])
    assert not confident.abstained and confident.abstain_reason == "" and confident.category == "billing"


def test_the_cuts_raised_on_english_real_mail_apply_to_english_only(shipped_model: CategoryModel) -> None:
    corpus_cut = shipped_model.metadata["threshold"]
    assert set(shipped_model.cuts_for("de").values()) == set(shipped_model.cuts_for("nl").values()) == {corpus_cut}
    raised = shipped_model.cuts_for("en")
    assert raised == shipped_model.cuts == shipped_model.cuts_for(None) == shipped_model.cuts_for("zxx")
    assert raised["incident"] > corpus_cut and raised["billing"] == corpus_cut
    text = "Fehler beim Speichern\nSeit heute Morgen kommt beim Speichern eines Kandidaten der Fehler 500."
    (german,) = shipped_model.predict([text], languages=["de"])
    (unknown,) = shipped_model.predict([text])
    assert german.threshold == corpus_cut and unknown.threshold == raised[unknown.category]
