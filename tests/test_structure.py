"""The code's structure: src/ in stages whose imports go one way (the layer test), no import cycle, and
one run record type (schema versions, runs.jsonl)."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

from src.run.records import (
    RECORD_FILE,
    RUNS_FILE,
    SCHEMA_VERSION,
    RunRecord,
    load_record,
    read_runs,
    write_record,
    write_runs,
)

from .conftest import ROOT

SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the src modules it imports anywhere in its body (lazy imports inside functions too).

    ``from src.a import b`` is an edge to ``src.a.b`` when that is a module, else to ``src.a``."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in modules:
                        edges.add(target)
                    elif base in modules:
                        edges.add(base)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


#: the most lines a module of the product (src/) or of its benchmarks may have: past it, split by what it does
MAX_MODULE_LINES = 450


def test_every_module_of_src_and_benchmarks_is_small():
    sizes = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for folder in (SRC, ROOT / "benchmarks")
        for path in folder.rglob("*.py")
    }
    assert len(sizes) > 50  # the folders were found
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_src_has_no_import_cycle():
    graph = import_graph()
    assert {"src.train", "src.run.records", "src.run.resume", "src.run.provenance", "src.run.distributed"} <= set(graph)
    assert graph["src.run.records"] >= {"src.run.provenance"}  # the walk sees real edges
    assert find_cycle(graph) is None, " → ".join(find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_provenance_is_a_leaf():
    assert import_graph()["src.run.provenance"] == set()


# --------------------------------------------------------------------------- layers
#: the command modules (``python -m …``): they may import anything, and nothing but a command imports them
COMMANDS = {
    "src.train",
    "src.evaluate",
    "src.restore",
    "src.gpu_study",
    "src.report.__main__",
    "src.studies",
    "src.wandb_sync",
}
#: the building blocks whose import paths stored configs name (``_target_: src.norms.…``)
BLOCKS = {"src.norms", "src.models", "src.data", "src.schedules"}
#: each stage and the stages it may import besides itself: run/ is the bottom (records, resume, the
#: lifecycle), training/ builds on it, sweep/ on both; a report reads run records only
LAYERS: dict[str, set[str]] = {
    "src.run": set(),
    **{block: BLOCKS for block in BLOCKS},
    "src.training": {"src.run", *BLOCKS},
    "src.sweep": {"src.run", "src.training", *BLOCKS},
    "src.report": {"src.run"},
}


def layer_of(module: str) -> str | None:
    """The stage ``module`` belongs to (``src.run`` for ``src.run.records``), or None."""
    return next((layer for layer in LAYERS if module == layer or module.startswith(layer + ".")), None)


def test_every_module_of_src_is_a_command_or_in_a_stage():
    """No flat modules: a module is a command at the top, or lives in its stage's package."""
    strays = sorted(m for m in import_graph() if m not in COMMANDS and m != "src" and layer_of(m) is None)
    assert not strays, f"put {strays} into a stage's package ({', '.join(LAYERS)}) or list it as a command"


def test_each_stage_imports_only_the_stages_below_it():
    graph = import_graph()
    wrong = []
    for module, targets in sorted(graph.items()):
        if module in COMMANDS:
            continue
        layer = layer_of(module)
        allowed = {layer} | LAYERS.get(layer, set()) if layer else set()
        for target in sorted(targets):
            if target in COMMANDS:
                wrong.append(f"{module} imports the command module {target}")
            elif layer_of(target) not in allowed:
                wrong.append(f"{module} ({layer}) imports {target} ({layer_of(target) or 'src'})")
    assert not wrong, "\n".join(wrong)


def test_the_layer_test_sees_a_wrong_import():
    graph = import_graph()
    assert "src.run.records" in graph["src.report.load"] and "src.training.single" in graph["src.train"]
    assert layer_of("src.sweep.pack.training") == "src.sweep" and layer_of("src.trainer") is None
    assert layer_of("src.report.__main__") == "src.report" and "src.report.__main__" in COMMANDS


# --------------------------------------------------------------------------- the run record


def test_a_record_round_trips_and_keeps_what_it_does_not_know(tmp_path):
    record = RunRecord(
        status="completed",
        study="s",
        norm="gn",
        batch=4,
        metrics={"test_error": 12.5},
        curve=[{"epoch": 0, "train_loss": 1.0, "val_error": 30.0, "lr": 0.1}],
        extra={"from_the_future": [1, 2]},
    )
    write_record(tmp_path, record)
    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and saved["from_the_future"] == [1, 2]
    assert "extra" not in saved
    assert load_record(tmp_path / RECORD_FILE) == record


def test_a_schema_0_record_loads_with_nulls_read_as_empty():
    old = {"status": "completed", "norm": "bn", "batch": 2, "metrics": None, "norm_state": None, "unknown": 1}
    record = RunRecord.from_dict(old)
    assert record.schema_version == 0 and record.metrics == {} and record.norm_state == {} and record.curve == []
    assert record.extra == {"unknown": 1} and math.isnan(record.test_error())
    assert record.to_dict()["unknown"] == 1


def test_runs_jsonl_is_one_compact_record_a_line_and_lists_bad_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "secret-value-123")
    records = [RunRecord(study="s", seed=seed, error="secret-value-123" if seed else None) for seed in range(3)]
    path = tmp_path / RUNS_FILE
    assert write_runs(path, records) == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("{") and ": " not in line for line in lines)
    assert "secret-value-123" not in path.read_text()
    path.write_text(path.read_text() + "not json\n")
    found = read_runs(path)
    assert [r.seed for _, r in found[:3]] == [0, 1, 2] and found[1][1].error == "***"
    assert found[3][0] == 4 and isinstance(found[3][1], str)


@pytest.mark.parametrize("field", ["curve", "norm_info", "schema_version"])
def test_the_record_type_is_the_only_definition_of_its_fields(field):
    """Fields of the record are named in src/run/records.py, not rebuilt as dicts by the lifecycle."""
    lifecycle = (SRC / "run" / "lifecycle.py").read_text()
    assert "RunRecord(" in lifecycle and f'"{field}"' not in lifecycle


# --------------------------------------------------------------------------- the norm knows itself


def test_every_norm_describes_itself_and_its_description_stays_out_of_the_hash(compose_cfg):
    from omegaconf import OmegaConf

    from src.norms import Normalization
    from src.run.config_keys import config_hash

    from .conftest import config_options

    orders, colors = set(), set()
    for name in config_options("norm"):
        cfg = compose_cfg(f"norm={name}")
        config = OmegaConf.to_container(cfg, resolve=True)
        info = config["norm"]["info"]
        assert info["label"] and info["family"] in ("batch", "group", "mixture", "weight", "other", "none"), name
        orders.add(info["order"])
        colors.add(info["color"])
        without = {**config, "norm": {k: v for k, v in config["norm"].items() if k != "info"}}
        assert config_hash(config) == config_hash(without), name
    assert len(orders) == len(colors) == len(config_options("norm"))  # each norm its own place and colour
    with pytest.raises(ValueError, match=r"norm.info.colour is not a known key: allowed are label, family"):
        Normalization("x", info={"colour": "red"})
