"""The report reads a study file's ``report`` block as Hydra composes it: inherited from the study it
extends, its own keys merged over."""

from pathlib import Path

import yaml

from src.report.pipeline import EXPERIMENTS, read_spec_file


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_a_study_inherits_the_claims_of_the_study_it_extends(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", {"report": {"title": "base", "alpha": 0.05, "claims": [{"id": "a"}]}})
    child = write(
        tmp_path / "child.yaml",
        {"defaults": ["base", {"override /dataset": "cifar10_jpeg"}, "_self_"], "report": {"title": "child"}},
    )
    assert read_spec_file(child) == {"title": "child", "alpha": 0.05, "claims": [{"id": "a"}]}


def test_own_lists_replace_and_mappings_merge(tmp_path: Path) -> None:
    base = {"report": {"claims": [{"id": "a"}, {"id": "b"}], "convergence": {"last_epochs": 3, "max_val_drop": 0.5}}}
    write(tmp_path / "base.yaml", base)
    own = {"claims": [{"id": "c"}], "convergence": {"max_val_drop": 1.0}}
    child = write(tmp_path / "child.yaml", {"defaults": ["base", "_self_"], "report": own})
    spec = read_spec_file(child)
    assert spec == {"claims": [{"id": "c"}], "convergence": {"last_epochs": 3, "max_val_drop": 1.0}}


def test_a_cycle_and_a_missing_parent_end_quietly(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"defaults": ["b", "missing"], "report": {"title": "a"}})
    write(tmp_path / "b.yaml", {"defaults": ["a"], "report": {"question": "b"}})
    assert read_spec_file(tmp_path / "a.yaml") == {"question": "b", "title": "a"}


def test_norm_compare_cifar10_states_its_own_claims_with_the_questions_margins() -> None:
    """Issue 29: the CIFAR-10 study registers its own claims (1-point margins, IN worst against every norm)
    instead of inheriting the Fashion-MNIST study's 0.5-point ones."""
    spec = read_spec_file(EXPERIMENTS / "norm_compare_cifar10.yaml")
    parent = read_spec_file(EXPERIMENTS / "norm_compare.yaml")
    assert spec is not None and parent is not None
    claims = {c["id"]: c for c in spec["claims"]}
    assert set(claims) == {"gn_close_to_bn_at_32", "gn_beats_ln", "ln_beats_in", "in_worst_norm"}
    assert claims["gn_close_to_bn_at_32"]["within"] == 1.0
    assert claims["in_worst_norm"]["kind"] == "worst" and claims["in_worst_norm"]["others"] == ["bn", "gn", "ln"]
    assert spec["title"] != parent["title"]


def test_one_reader_composes_every_study_file_for_report_plan_and_registration(tmp_path: Path) -> None:
    """Issue 30: the report's block, the planner's sweep and the registration check's versions all come
    from src.run.study_file; the git reader (a callable) and the disk reader give the same composition."""
    from src.report.plan import compose_study as plan_compose
    from src.report.registration import _block
    from src.run.study_file import compose_study, report_block

    write(tmp_path / "base.yaml", {"epochs": 16, "report": {"title": "base", "claims": [{"id": "a"}]}})
    child = write(tmp_path / "child.yaml", {"defaults": ["base", "_self_"], "batch": 2, "report": {"title": "c"}})
    composed = compose_study(child)
    assert composed == {"epochs": 16, "batch": 2, "report": {"title": "c", "claims": [{"id": "a"}]}}
    assert plan_compose(child) == composed
    assert report_block(child) == read_spec_file(child) == composed["report"]
    texts = {str(p): p.read_text(encoding="utf-8") for p in tmp_path.glob("*.yaml")}
    assert _block(texts.get, str(child)) == composed["report"]
    assert _block(texts.get, str(tmp_path / "absent.yaml")) is None


def test_no_module_but_the_one_reader_composes_study_files() -> None:
    """The composition (parents from ``defaults``, merged by OmegaConf) is written once."""
    from .conftest import ROOT

    composing = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "src").rglob("*.py")
        if "OmegaConf.merge" in p.read_text(encoding="utf-8") and '.get("defaults")' in p.read_text(encoding="utf-8")
    ]
    assert composing == ["src/run/study_file.py"]
