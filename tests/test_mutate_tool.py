"""tools/mutate.py's own bookkeeping (no mutmut run: that takes minutes): what counts, and where."""

from __future__ import annotations

import pytest

from tools import mutate
from tools.mutate import ModuleResult, Mutant, string_only_change


@pytest.mark.parametrize("before, after, prose", [
    ('raise PushError(f"cannot write {x}")', 'raise PushError(f"XXcannot write {x}XX")', True),
    ("'{\"name\": \"r2\"}: fix or remove it')", "'{\"NAME\": \"R2\"}: FIX OR REMOVE IT')", True),  # a statement's tail
    ('x = d.get("deploy")', 'x = d.get("XXdeployXX")', False),  # a key: logic
    ('f("a b", 1)', 'f("a b", 2)', False),
    ('raise E("a b")', "raise E(None)", False),
    ("if a < b:", "if a <= b:", False),
])
def test_only_prose_in_string_literals_is_set_apart(before, after, prose):
    assert string_only_change(before, after) is prose


def test_the_score_counts_logic_mutants_and_timeouts_as_noticed():
    def m(status, kind="logic"):
        return Mutant("n", status, 1, "a", "b", kind)
    result = ModuleResult("x.py", [m("killed"), m("timeout"), m("survived"), m("no tests"), m("not run"),
                                   m("survived", "prose"), m("survived", "equivalent")])
    assert result.score == 2 / 4
    assert (result.count("killed"), result.count("survived"), result.count("survived", "prose")) == (1, 1, 1)
    assert ModuleResult("y.py", [m("not run")]).score is None


def test_a_diff_gives_the_changed_line_of_the_function():
    diff = "\n".join(["--- a.py", "+++ a.py", "@@ -1,4 +1,4 @@", " def f(x):", "     y = 1", "-    return x < y",
                      "+    return x <= y"])
    assert mutate._changed_line(diff) == (2, "    return x < y", "    return x <= y")


def test_equivalent_mutants_are_listed_apart_with_their_reason(monkeypatch):
    monkeypatch.setitem(mutate.EQUIVALENT, ("x.py", "a = 1", "a = 2"), "never read")
    mutant = mutate.classify("x.py", Mutant("n", "survived", 3, "    a = 1", "    a = 2"))
    assert (mutant.kind, mutant.why) == ("equivalent", "never read")


def test_every_module_and_test_file_in_the_list_exists():
    assert mutate.MODULES
    for module, tests in mutate.MODULES.items():
        assert (mutate.ROOT / module).is_file(), module
        assert tests and all((mutate.ROOT / test).is_file() for test in tests), (module, tests)
