"""The tasks on the real data: sizes, labels, demonstrations, and what the data's construction implies."""
from __future__ import annotations

from evals.solverlearner.arithmetic import add_in_base
from evals.solverlearner.spatial import MAPS


def test_arithmetic_files_and_labels(bank):
    for b in (8, 9, 10, 11, 16):
        probs = bank.problems("arithmetic", f"base{b}")
        assert len(probs) == 1000
        assert all(len(p.demos) == 4 for p in probs)
        p = probs[0]
        a, c = p.input
        assert int(p.gold, b) == int(a, b) + int(c, b)
        assert all(int(ans, b) == int(x, b) + int(y, b) for (x, y), ans in p.demos)
    assert bank.problems("arithmetic", "base9")[0].gold == "101"  # 76+14 in base 9 (69 + 13 = 82 = 1·81 + 1)


def test_counterfactual_bases_differ_from_base10_reading(bank):
    # The README: for bases other than 10 the problems were drawn so that the base-b answer differs from
    # reading the digits as base 10. That is what makes the rule-blind row score 0 there.
    for b in (8, 9, 11, 16):
        probs = bank.problems("arithmetic", f"base{b}")
        same = sum(add_in_base(*p.input, 10) == p.gold for p in probs)
        assert probs and same == 0, (b, len(probs), same)


def test_optional_arithmetic_sets(bank):
    three = bank.problems("arithmetic", "base11_3digits")
    assert len(three) == 1000 and all(len(x) == 3 for x in three[0].input) and len(three[0].demos) == 4
    assert three[0].id == "arithmetic/base11_3digits/0"
    ccc = bank.problems("arithmetic", "ccc_base16")
    assert len(ccc) == 200 and ccc[1].input == ("F", "1") and ccc[1].gold == "10"


def test_syntax_gold_from_original_sentence(bank):
    for order in ("svo", "sov", "vso", "vos", "osv", "ovs"):
        probs = bank.problems("syntax", order)
        assert len(probs) == 100
        for p in probs:
            assert bank.tasks["syntax"].solve(order, p.input) == p.gold


def test_spatial_rooms_and_maps(bank):
    probs = bank.problems("spatial", "r90")
    assert len(probs) == 100 and all(len(p.meta["objects"]) == 3 for p in probs)
    p = probs[0]  # laundry room: dryer east, sink west, washing machine south
    assert p.gold == {"dryer": MAPS["r90"]["east"], "sink": MAPS["r90"]["west"],
                      "washing machine": MAPS["r90"]["south"]}
    for variant in MAPS:
        for q in bank.problems("spatial", variant):
            assert bank.tasks["spatial"].judge(q.gold, q).correct


def test_cipher_is_deterministic_real_words(bank, data_dir):
    from evals.solverlearner.tasks import ProblemBank, make_tasks

    again = ProblemBank(make_tasks(cipher_words=40), data_dir, n_shots=4)
    a = bank.problems("cipher", "shift13")
    assert [p.gold for p in a] == [p.gold for p in again.problems("cipher", "shift13")]
    assert len({p.gold for p in a}) == 40 and all(p.gold.isalpha() and p.gold.islower() for p in a)
    assert all(p.input != p.gold for p in a)                          # ROT13 changes every letter
    assert [p.gold for p in bank.problems("cipher", "shift0")] == [p.gold for p in a]
    assert all(p.input == p.gold for p in bank.problems("cipher", "shift0"))


def test_lead_prompts_put_the_query_line_in_the_assistant_turn(bank):
    from evals.solverlearner.prompts import CODE_LEAD, build_prompt, lead_prompt
    checked = set()
    for task_name, variant in [("arithmetic", "base9"), ("syntax", "ovs"), ("spatial", "r90"), ("cipher", "shift13")]:
        problem = bank.problems(task_name, variant)[0]
        for setting in ("deductive_zeroshot", "inductive_fewshot", "solverlearner"):
            text, lead = build_prompt(bank.tasks[task_name], problem, setting)
            p = lead_prompt(bank.tasks[task_name], problem, setting)
            assert p == text and p.lead and text.endswith(p.lead) and "\n" not in p.lead.rstrip("\n")
            assert lead.strip().lower() in p.lead.lower()      # the parser's lead sits in the assistant turn
            if setting == "solverlearner":
                assert p.lead == CODE_LEAD
            checked.add((task_name, setting))
    assert len(checked) == 12
