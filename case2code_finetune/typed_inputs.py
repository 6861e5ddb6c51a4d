"""Inputs without a model: guess each argument's type from annotations, defaults, its name, the literals in
the body and how the body uses it, then draw readable values with Hypothesis strategies (seeded per function
signature, so behaviourally identical functions get identical inputs and the behavioural dedup can see them).

Guesses are ranked per argument; most inputs use the best guess, a few the runner-up, and inputs whose guess
was wrong (TypeError/AttributeError when run) are dropped after execution (`execute.keep_decision`).
"""
from __future__ import annotations

import ast
import hashlib
import string
from collections import Counter, defaultdict

from hypothesis import HealthCheck, Phase, Verbosity, given, seed as hyp_seed, settings, strategies as st

from case2code_finetune import function_filters as ff
from case2code_finetune.input_values import valid_kwargs

N_INPUTS = 10
N_CANDIDATES = 12       # from the best type guess (a few spare: wrong guesses are dropped after execution)
N_PER_ALTERNATIVE = 3  # from each other guess

KINDS = ("int", "float", "str", "bool", "list_int", "list_str", "dict", "tuple_int", "none")
STR_METHODS = frozenset(n for n in dir(str) if not n.startswith("_"))
LIST_ONLY_METHODS = frozenset({"append", "extend", "pop", "insert", "sort", "reverse", "remove", "clear", "copy"})
DICT_METHODS = frozenset({"items", "keys", "values", "get", "setdefault", "update", "popitem"})
SEQ_FUNCS = frozenset({"len", "sorted", "enumerate", "reversed", "list", "set", "tuple", "zip", "iter", "any",
                       "all", "frozenset"})
NUM_SEQ_FUNCS = frozenset({"sum", "max", "min"})
INT_FUNCS = frozenset({"range", "chr", "bin", "hex", "oct"})
NAME_HINTS = (
    (("n", "k", "i", "j", "m", "num", "count", "size", "length", "width", "height", "index", "idx", "depth",
      "level", "base", "digits", "limit", "start", "stop", "end", "step", "times", "year", "month", "day",
      "number", "pos", "offset", "bits", "degree"), "int"),
    (("s", "text", "string", "name", "word", "line", "prefix", "suffix", "sep", "char", "c", "ch", "path",
      "pattern", "key", "title", "label", "msg", "message", "sentence", "value_str", "fmt", "encoding",
      "errors", "mode", "token", "url", "filename", "word1", "word2", "s1", "s2"), "str"),
    (("lst", "items", "xs", "values", "nums", "numbers", "arr", "array", "seq", "sequence", "data", "elements",
      "list", "iterable", "vals", "args", "nodes", "ints"), "list_int"),
    (("words", "names", "strings", "lines", "tokens", "parts", "keys"), "list_str"),
    (("d", "dct", "mapping", "table", "counts", "dic", "dictionary", "config", "options", "kwargs"), "dict"),
    (("flag", "strict", "reverse", "verbose", "ignore_case", "inplace", "recursive"), "bool"),
    (("x", "y", "z", "a", "b", "value", "val", "amount", "total", "score", "rate"), "int"),
    (("f", "ratio", "alpha", "beta", "weight", "prob", "p", "eps", "tol", "factor", "scale"), "float"),
)


def _annotation_kind(node: ast.expr | None) -> str | None:
    if node is None:
        return None
    text = ast.unparse(node).replace("typing.", "").replace(" ", "")
    if text.startswith(("Optional[", "Union[")):
        text = text.split("[", 1)[1].split(",")[0].rstrip("]")
    table = {"int": "int", "float": "float", "str": "str", "bool": "bool", "list": "list_int", "List": "list_int",
             "dict": "dict", "Dict": "dict", "tuple": "tuple_int", "Tuple": "tuple_int", "bytes": None}
    if text in table:
        return table[text]
    if text.startswith(("list[str", "List[str", "Sequence[str", "Iterable[str")):
        return "list_str"
    if text.startswith(("list[", "List[", "Sequence[", "Iterable[", "set[", "Set[")):
        return "list_int"
    if text.startswith(("dict[", "Dict[", "Mapping[")):
        return "dict"
    if text.startswith(("tuple[", "Tuple[")):
        return "tuple_int"
    return None


def _default_kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    for t, k in ((int, "int"), (float, "float"), (str, "str"), (dict, "dict"), (tuple, "tuple_int")):
        if isinstance(value, t):
            return k
    if isinstance(value, list):
        return "list_str" if value and all(isinstance(v, str) for v in value) else "list_int"
    return None


class Evidence:
    """Per-argument kind scores plus the literals the body compares or indexes it with."""

    def __init__(self, fn: ast.FunctionDef):
        self.params = [p.arg for p in ff.keyword_params(fn)]
        self.scores: dict[str, Counter] = {p: Counter() for p in self.params}
        self.str_literals: list[str] = []
        self.int_literals: list[int] = []
        self.dict_keys: dict[str, list[str]] = defaultdict(list)
        self.defaults: dict[str, object] = {}
        self._collect(fn)

    def _add(self, name: str, kind: str, w: float) -> None:
        if name in self.scores:
            self.scores[name][kind] += w

    def _collect(self, fn: ast.FunctionDef) -> None:
        params = ff.keyword_params(fn)
        pos_defaults = dict(zip([p.arg for p in fn.args.args][::-1], fn.args.defaults[::-1]))
        kw_defaults = {p.arg: d for p, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None}
        for p in params:
            kind = _annotation_kind(p.annotation)
            if kind:
                self._add(p.arg, kind, 5)
            d = pos_defaults.get(p.arg, kw_defaults.get(p.arg))
            if d is not None:
                try:
                    value = ast.literal_eval(d)
                    self.defaults[p.arg] = value
                    kind = _default_kind(value)
                    if kind:
                        self._add(p.arg, kind, 4)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    pass
            low = p.arg.lower()
            for names, kind in NAME_HINTS:
                if low in names or (kind == "bool" and low.startswith(("is_", "has_", "use_", "allow_"))):
                    self._add(p.arg, kind, 2)
                    break
        for node in ast.walk(ast.Module(body=fn.body, type_ignores=[])):
            self._usage(node)

    def _name(self, node: ast.AST) -> str | None:
        return node.id if isinstance(node, ast.Name) and node.id in self.scores else None

    def _usage(self, node: ast.AST) -> None:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and 0 < len(node.value) <= 20 and node.value not in self.str_literals:
                self.str_literals.append(node.value)
            elif isinstance(node.value, int) and not isinstance(node.value, bool) and abs(node.value) < 1000 \
                    and node.value not in self.int_literals:
                self.int_literals.append(node.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            f = node.func.id
            for a in node.args:
                n = self._name(a)
                if n is None:
                    continue
                if f in SEQ_FUNCS:
                    self._add(n, "list_int", 1.0)
                    self._add(n, "str", 0.6)
                elif f in NUM_SEQ_FUNCS:
                    self._add(n, "list_int", 1.0 if len(node.args) == 1 else 0)
                    self._add(n, "int", 0 if len(node.args) == 1 else 1.0)
                elif f in INT_FUNCS:
                    self._add(n, "int", 2)
                elif f == "ord":
                    self._add(n, "str", 2)
                elif f in ("float", "round", "abs"):
                    self._add(n, "float", 0.8)
                    self._add(n, "int", 0.8)
                elif f in ("int",):
                    self._add(n, "str", 0.6)
                    self._add(n, "float", 0.6)
                elif f == "isinstance":
                    pass
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            n = self._name(node.func.value)
            m = node.func.attr
            if n is not None:
                if m in DICT_METHODS:
                    self._add(n, "dict", 2)
                elif m in LIST_ONLY_METHODS:
                    self._add(n, "list_int", 2)
                elif m in STR_METHODS:
                    self._add(n, "str", 2 if m not in ("count", "index") else 0.5)
                    if m in ("count", "index"):
                        self._add(n, "list_int", 0.5)
                elif m in ("bit_length", "to_bytes"):
                    self._add(n, "int", 2)
                elif m == "is_integer":
                    self._add(n, "float", 2)
        elif isinstance(node, ast.For):
            n = self._name(node.iter)
            if n:
                self._add(n, "list_int", 1.2)
                self._add(n, "str", 0.5)
        elif isinstance(node, ast.comprehension):
            n = self._name(node.iter)
            if n:
                self._add(n, "list_int", 1.2)
                self._add(n, "str", 0.5)
        elif isinstance(node, ast.BinOp):
            for side, other in ((node.left, node.right), (node.right, node.left)):
                n = self._name(side)
                if n is None:
                    continue
                if isinstance(other, ast.Constant) and isinstance(other.value, str):
                    self._add(n, "str", 2 if isinstance(node.op, ast.Add) else 0.5)
                elif isinstance(other, ast.Constant) and isinstance(other.value, float):
                    self._add(n, "float", 1.5)
                elif isinstance(node.op, (ast.Sub, ast.Div, ast.FloorDiv, ast.Pow, ast.BitAnd, ast.BitOr,
                                          ast.BitXor, ast.LShift, ast.RShift)):
                    self._add(n, "int", 1.5)
                elif isinstance(node.op, ast.Mod) and side is node.left and not (
                        isinstance(other, (ast.Tuple, ast.Constant)) and isinstance(getattr(other, "value", 0), str)):
                    self._add(n, "int", 1.0)
                else:
                    self._add(n, "int", 0.7)
        elif isinstance(node, ast.Compare):
            operands = [node.left] + list(node.comparators)
            for i, a in enumerate(operands):
                n = self._name(a)
                if n is None:
                    continue
                for b in operands[:i] + operands[i + 1:]:
                    if isinstance(b, ast.Constant) and isinstance(b.value, str):
                        self._add(n, "str", 1.5)
                    elif isinstance(b, ast.Constant) and isinstance(b.value, (int, float)) \
                            and not isinstance(b.value, bool):
                        self._add(n, "float" if isinstance(b.value, float) else "int", 1.0)
                if i > 0 and isinstance(node.ops[i - 1], (ast.In, ast.NotIn)):
                    self._add(n, "list_int", 0.8)
                    self._add(n, "str", 0.8)
        elif isinstance(node, ast.Subscript):
            n = self._name(node.value)
            if n is not None:
                sl = node.slice
                if isinstance(sl, ast.Constant) and isinstance(sl.value, str):
                    self._add(n, "dict", 3)
                    if sl.value not in self.dict_keys[n]:
                        self.dict_keys[n].append(sl.value)
                elif isinstance(sl, ast.Slice):
                    self._add(n, "str", 1.0)
                    self._add(n, "list_int", 1.0)
                else:
                    self._add(n, "list_int", 1.0)
                    self._add(n, "str", 0.4)
        elif isinstance(node, (ast.If, ast.While, ast.IfExp)):
            n = self._name(node.test)
            if n:
                self._add(n, "bool", 0.6)
        elif isinstance(node, ast.UnaryOp):
            n = self._name(node.operand)
            if n:
                self._add(n, "bool" if isinstance(node.op, ast.Not) else "int", 0.8)

    def ranked(self, name: str) -> list[str]:
        sc = self.scores[name]
        if not sc:
            return ["int", "str"]
        return [k for k, _ in sorted(sc.items(), key=lambda kv: (-kv[1], KINDS.index(kv[0])))]


# ------------------------------------------------------------------ strategies
_TEXT_ALPHABET = string.ascii_letters + string.digits + " "
_WORDS = ["hello", "world", "abc", "Hello World", "a,b,c", "123", "python", "x y z", "racecar", "OpenAI"]


def _strategy(kind: str, ev: Evidence, name: str) -> st.SearchStrategy:
    ints = st.one_of(st.integers(0, 10), st.integers(-20, 100))
    if ev.int_literals:
        ints = st.one_of(ints, st.sampled_from(ev.int_literals))
    words = st.one_of(st.text(_TEXT_ALPHABET, min_size=1, max_size=10), st.sampled_from(_WORDS))
    if ev.str_literals:
        words = st.one_of(words, st.sampled_from(ev.str_literals))
    if kind == "int":
        return ints
    if kind == "float":
        return st.floats(-100, 100, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 2))
    if kind == "str":
        return words
    if kind == "bool":
        return st.booleans()
    if kind == "list_int":
        return st.lists(st.integers(-10, 50), min_size=0, max_size=6)
    if kind == "list_str":
        return st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=6), max_size=5)
    if kind == "tuple_int":
        return st.tuples(st.integers(0, 20), st.integers(0, 20))
    if kind == "dict":
        keys = ev.dict_keys.get(name)
        if keys:
            return st.fixed_dictionaries({k: st.one_of(st.integers(0, 20), words) for k in keys[:6]})
        return st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=5), st.integers(0, 20),
                               max_size=4)
    return st.none()


def _kwargs_strategy(ev: Evidence, choice: dict[str, str]) -> st.SearchStrategy:
    parts = {}
    for p in ev.params:
        s = _strategy(choice[p], ev, p)
        if p in ev.defaults:
            s = st.one_of(s, st.just(ev.defaults[p]))
        parts[p] = s
    return st.fixed_dictionaries(parts)


def draw(plan: list[tuple[st.SearchStrategy, int]], seed: int) -> list:
    """Distinct (by repr) values: up to `n` from each `(strategy, n)` in `plan`, in plan order,
    deterministic for a given seed.

    One Hypothesis test case draws all values (`st.data()`), so the engine's per-case overhead is paid
    twice per function rather than per value. Its first case is the all-simplest one, so the second
    (random) case's values come first."""
    runs: list[list] = []

    @hyp_seed(seed)
    @settings(max_examples=2, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet)
    @given(st.data())
    def collect(data):
        got, seen = [], set()
        for strategy, n in plan:
            mine = 0
            for _ in range(3 * n):
                value = data.draw(strategy)
                key = repr(value)
                if key not in seen:
                    seen.add(key)
                    got.append((len(got), value))
                    mine += 1
                    if mine >= n:
                        break
        runs.append(got)

    collect()
    out, seen = [], set()
    for _, value in [v for run in reversed(runs) for v in run]:
        if repr(value) not in seen:
            seen.add(repr(value))
            out.append(value)
    return out


def signature_seed(fn: ast.FunctionDef, base_seed: int) -> int:
    sig = ast.dump(fn.args, include_attributes=False)
    return int(hashlib.sha1(f"{base_seed}:{sig}".encode()).hexdigest()[:8], 16)


def assignments(ev: Evidence) -> list[dict[str, str]]:
    """Type assignments to try, best guess first: the top kind per argument, the runner-up per argument,
    then everything as str, as int, as a list of ints (wrong guesses are dropped after execution)."""
    best = {p: ev.ranked(p)[0] for p in ev.params}
    alt = {p: (ev.ranked(p) + [best[p]])[1] for p in ev.params}
    plans = [best, alt] + [{p: k for p in ev.params} for k in ("str", "int", "list_int")]
    out = []
    for a in plans:
        if a not in out:
            out.append(a)
    return out


def typed_inputs(fn: ast.FunctionDef, *, n: int = N_CANDIDATES, seed: int = 0) -> list[dict]:
    """Candidate kwargs dicts for `fn`: `n` from the best type guess, then a few from each other guess."""
    ev = Evidence(fn)
    if not ev.params:
        return []
    plan = assignments(ev)
    values = draw([(_kwargs_strategy(ev, a), n if k == 0 else N_PER_ALTERNATIVE) for k, a in enumerate(plan)],
                  signature_seed(fn, seed))
    out, seen = [], set()
    for kw in values:
        kw = {p: kw[p] for p in ev.params if p in kw}  # signature order, whatever order the draw used
        key = repr(kw)
        if key not in seen and valid_kwargs(kw, ev.params):
            seen.add(key)
            out.append(kw)
    return out


class TypedInputs:
    """The no-model generator (same interface as `llm_inputs.LLMInputs`)."""
    name = "typed"

    def __init__(self, seed: int = 0, n: int = N_CANDIDATES):
        self.seed, self.n = seed, n

    def generate(self, rows: list[dict], counts: Counter) -> dict[str, list[dict]]:
        out = {}
        for row in rows:
            fn = next(n for n in ast.parse(row["content"]).body if isinstance(n, ast.FunctionDef))
            kws = typed_inputs(fn, n=self.n, seed=self.seed)
            if not kws:
                counts["typed_no_inputs"] += 1
            out[row["id"]] = kws
        return out
