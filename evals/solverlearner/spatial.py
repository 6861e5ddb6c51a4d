"""Place the objects of a room when the direction words follow a counterfactual map.

Data: `spatial/data/3obj.txt`, one room per line ("There is a X on the <side> side." three times). Variants are
direction maps from the four words to unit vectors in (x, y), x towards the usual east, y towards the usual north:
- `default`: north (0, 1), south (0, -1), east (1, 0), west (-1, 0);
- `r90`, `r180`, `r270`: every vector of the default map rotated counter-clockwise by that angle
  (under r90, "north" points to (-1, 0));
- `vflip`: north and south swapped; `hflip`: east and west swapped;
- `random`: a permutation of the four vectors drawn with `random.Random(0)` from those that are none of the
  maps above (fixed, so every run and every reader sees the same map).

Answer: a coordinate per object, written `name = (x, y); ...`. Scoring (REFERENCE §3): with c the centroid of
the predicted coordinates of the room's objects, an object is right when (its coordinate − c) · (the map's
vector for its side) > 0; a room is right when all its objects are. An object with no coordinate is wrong (and
the centroid is taken over the others); an answer with no coordinate for any object is a parse failure.
Parsing: inside the first `\\boxed{...}` when there is one, else in "Answer:" + completion, the first
`name = (x, y)` (or `name: (x, y)`) for each object, names case-insensitive.
`solver(room: str) -> dict[str, tuple[float, float]]`: the room text in, object name → (x, y) out.
"""
from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

from evals.solverlearner.common import Problem, first_boxed
from evals.solverlearner.task_base import Task, UnknownVariant, Verdict
from patch_training.errors import UserError

SIDES = ("north", "south", "east", "west")
DEFAULT_MAP = {"north": (0, 1), "south": (0, -1), "east": (1, 0), "west": (-1, 0)}
_OBJECT = re.compile(r"There is an? (.+?) on the (north|south|east|west) side\.")
_NUM = r"[-+]?\d+(?:\.\d+)?"


def _transform(f) -> dict[str, tuple[int, int]]:
    return {side: f(*vec) for side, vec in DEFAULT_MAP.items()}


def _named_maps() -> dict[str, dict[str, tuple[int, int]]]:
    maps = {
        "default": dict(DEFAULT_MAP),
        "r90": _transform(lambda x, y: (-y, x)),
        "r180": _transform(lambda x, y: (-x, -y)),
        "r270": _transform(lambda x, y: (y, -x)),
        "vflip": _transform(lambda x, y: (x, -y)),
        "hflip": _transform(lambda x, y: (-x, y)),
    }
    taken = [tuple(m[s] for s in SIDES) for m in maps.values()]
    vectors = [DEFAULT_MAP[s] for s in SIDES]
    candidates = [p for p in itertools.permutations(vectors) if p not in taken]
    maps["random"] = dict(zip(SIDES, random.Random(0).choice(candidates)))
    return maps


MAPS = _named_maps()

_SOLVER_TEMPLATE = '''import re

DIRECTIONS = {mapping!r}


def solver(room: str) -> dict:
    found = re.findall(r"There is an? (.+?) on the (north|south|east|west) side\\.", room)
    return {{name: DIRECTIONS[side] for name, side in found}}
'''


def room_objects(text: str) -> list[tuple[str, str]]:
    return _OBJECT.findall(text)


def coordinates(objects, mapping) -> dict[str, tuple[int, int]]:
    return {name: tuple(mapping[side]) for name, side in objects}


class SpatialTask(Task):
    name = "spatial"
    everyday_variant = "default"
    default_variants = tuple(MAPS)
    solver_signature = "def solver(room: str) -> dict[str, tuple[float, float]]"
    solver_doc = ("`room` is the room description as written above; return a dict from each object's name "
                  "(as written) to its (x, y) coordinate")
    answer_format = "Answer: name = (x, y); name = (x, y); ..."
    answer_lead = "Answer:"

    def check_variant(self, variant: str) -> None:
        if variant not in MAPS:
            raise UnknownVariant(f"spatial: unknown variant {variant!r}; known: {', '.join(MAPS)}")

    def load(self, variant: str, data_dir: Path, n_shots: int) -> list[Problem]:
        self.check_variant(variant)
        path = data_dir / "counterfactual" / "spatial" / "data" / "3obj.txt"
        if not path.is_file():
            raise UserError(f"spatial: data file {path} is missing (see ../shared/data/README.md)")
        rooms = [ln.strip() for ln in path.read_text().splitlines()]
        objects = []
        for i, room in enumerate(rooms):
            objs = room_objects(room)
            names = [n.lower() for n, _ in objs]
            if not objs or len(set(names)) != len(names):
                raise UserError(f"spatial: {path} line {i + 1}: expected objects with distinct names, got {room!r}")
            objects.append(objs)
        mapping = MAPS[variant]
        problems = []
        for i, room in enumerate(rooms):
            rng = random.Random(f"spatial/{variant}/{i}")
            others = [j for j in range(len(rooms)) if j != i]
            picks = rng.sample(others, min(n_shots, len(others)))
            demos = tuple((rooms[j], coordinates(objects[j], mapping)) for j in picks)
            problems.append(Problem(self.name, variant, i, room, coordinates(objects[i], mapping), demos,
                                    {"objects": objects[i]}))
        return problems

    def _map_words(self, variant: str) -> str:
        m = MAPS[variant]
        return ", ".join(f"{s} = ({m[s][0]}, {m[s][1]})" for s in SIDES)

    def rule_text(self, variant: str) -> str:
        return ("You stand at (0, 0) in the middle of the room; x grows towards the usual east and y towards the "
                "usual north. In this world the direction words point along these vectors: "
                f"{self._map_words(variant)}. An object on a side lies one step along that side's vector. "
                "Give the (x, y) coordinate of every object.")

    def rule_note(self, variant: str, inp) -> str:
        return f"Directions: {self._map_words(variant)}."

    def solve(self, variant: str, inp) -> dict:
        return coordinates(room_objects(inp), MAPS[variant])

    def rule_source(self, variant: str) -> str:
        self.check_variant(variant)
        return _SOLVER_TEMPLATE.format(mapping=MAPS[variant])

    def task_intro(self) -> str:
        return "For each room below, give the (x, y) coordinate of every object in it."

    def example_text(self, inp, answer, note=None) -> str:
        lines = [f"Room: {inp}"]
        if note:
            lines.append(note)
        lines.append(self.answer_lead if answer is None else f"{self.answer_lead} {self.answer_text(answer)}")
        return "\n".join(lines)

    def answer_text(self, answer) -> str:
        return "; ".join(f"{name} = ({xy[0]}, {xy[1]})" for name, xy in answer.items())

    def parse(self, completion: str, problem: Problem):
        text = f"{self.answer_lead} {completion}"
        boxed = first_boxed(text)
        if boxed is not None:
            text = boxed
        found, claimed = {}, []
        # Longest names first, each match claiming its span: "table" must not take "coffee table = (..)".
        for name, _side in sorted(problem.meta["objects"], key=lambda o: -len(o[0])):
            pattern = rf"(?<![A-Za-z]){re.escape(name)}\s*[=:]\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*\)"
            for m in re.finditer(pattern, text, re.IGNORECASE):
                if not any(a < m.end() and m.start() < b for a, b in claimed):
                    found[name] = (float(m.group(1)), float(m.group(2)))
                    claimed.append(m.span())
                    break
        return found or None

    def solver_kwargs(self, problem: Problem) -> dict:
        return {"room": problem.input}

    def from_solver_output(self, value, problem: Problem):
        if not isinstance(value, dict):
            return None
        by_name = {str(k).strip().lower(): v for k, v in value.items() if isinstance(k, str)}
        found = {}
        for name, _side in problem.meta["objects"]:
            v = by_name.get(name.lower())
            if (isinstance(v, (tuple, list)) and len(v) == 2
                    and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                found[name] = (float(v[0]), float(v[1]))
        return found or None

    def judge(self, answer, problem: Problem) -> Verdict:
        mapping = MAPS[problem.variant]
        objs = problem.meta["objects"]
        placed = {name: answer[name] for name, _ in objs if name in answer}
        if not placed:
            return Verdict(False, 0, len(objs))
        cx = sum(x for x, _ in placed.values()) / len(placed)
        cy = sum(y for _, y in placed.values()) / len(placed)
        right = 0
        for name, side in objs:
            if name in placed:
                dx, dy = mapping[side]
                x, y = placed[name]
                right += (x - cx) * dx + (y - cy) * dy > 0
        return Verdict(right == len(objs), right, len(objs))
