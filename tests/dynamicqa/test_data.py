"""The loader: [ENTITY] filling on real rows of each file, validation, malformed rows counted."""
import pytest

from evals.dynamicqa.data import load_fact_type, default_data_dir, FILE_NAMES
from evals.dynamicqa.prompts import context_prompt, question_only_prompt
from patch_training.errors import UserError


def _real(fact_type):
    path = default_data_dir() / FILE_NAMES[fact_type]
    if not path.is_file():
        pytest.skip(f"shared DynamicQA data missing: {path}")
    return path


def test_static_first_row_filled_both_ways():
    res = load_fact_type("static", _real("static"), limit=1)
    item = res.items[0]
    assert (item.subj, item.obj, item.replace_name) == ("Herlyn Espinal", "journalist", "literary critic")
    assert item.contexts["obj"] == "Herlyn Iván Espinal Martínez (14 September 1982 – 20 July 2014) was a journalist."
    assert item.contexts["replace"].endswith("2014) was a literary critic.")
    assert item.possible_answers == ("journalist", "journo", "journalists")
    assert item.item_id("replace") == "static/0/replace"


def test_temporal_first_row_filled_both_ways():
    item = load_fact_type("temporal", _real("temporal"), limit=1).items[0]
    assert item.contexts["obj"].startswith("George James Rankin,  (1 May 1887 – 28 December 1957) was a politician. He")
    assert item.contexts["replace"].startswith("George James Rankin,  (1 May 1887 – 28 December 1957) was a judge. He")
    assert "[ENTITY]" not in item.contexts["obj"] + item.contexts["replace"]


def test_disputable_replaces_answer_and_prepends_subject():
    item = load_fact_type("disputable", _real("disputable"), limit=2).items[1]
    assert (item.subj, item.obj, item.replace_name) == ("Kim Jong Il", "dictator", "leader")
    assert item.contexts["obj"] == ("This article is about Kim Jong Il. template:koreanname kim jong-il "
                                    "(born february 16, 1942) has been the dictator of north korea since 1994.")
    assert item.contexts["replace"] == ("This article is about Kim Jong Il. template:koreanname kim jong-il "
                                        "(born february 16, 1942) has been the leader of north korea since 1994.")


def test_full_files_load_without_problems():
    counts = {t: load_fact_type(t, _real(t)) for t in ("static", "temporal", "disputable")}
    assert {t: len(r.items) for t, r in counts.items()} == {"static": 2500, "temporal": 2495, "disputable": 694}
    assert all(not r.problems for r in counts.values())


def test_row_without_placeholder_is_counted(small_data_dir):
    res = load_fact_type("static", small_data_dir / "Static_final.csv")
    assert [it.row for it in res.items] == [0, 1]
    assert res.problems == {"no [ENTITY] in context": 1}
    assert "1 malformed rows skipped" in res.report()


def test_missing_column_is_one_line(tmp_path):
    p = tmp_path / "Static_final.csv"
    p.write_text("id,subj,question,obj,context\n1,a,b,c,d [ENTITY]\n")
    with pytest.raises(UserError, match="missing column.*replace_name"):
        load_fact_type("static", p)


def test_empty_field_and_short_row_are_counted(tmp_path):
    p = tmp_path / "Disputable_final.csv"
    p.write_text("subj,question,context,obj,replace_name\n"
                 "S,Q?,the x was here,x,y\n"
                 "S,,the x was here,x,y\n"
                 "S,Q?,the x was here\n"
                 "S,Q?,nothing to see,x,y\n")
    res = load_fact_type("disputable", p)
    assert len(res.items) == 1
    assert res.problems == {"empty question": 1, "wrong number of fields": 1, "answer not in context": 1}


def test_prompts_carry_question_and_context(small_data_dir):
    item = load_fact_type("static", small_data_dir / "Static_final.csv").items[1]
    q = question_only_prompt(item)
    assert "Bob Ray" in q and item.question in q and "Ohio" not in q and q.endswith("[Answer]:")
    c = context_prompt(item, "replace")
    assert "Bob Ray was a judge in Ohio." in c and item.question in c
