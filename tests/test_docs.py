"""README.md and docs/*.md: the README's length and set-up commands, every relative link, every
``python -m src.train`` command in a fenced block (composed in-process with Hydra's compose API, as
``--cfg job`` would), and the README's layout block."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.run.config_keys import register_resolvers
from src.studies import experiment_choice

from .conftest import CONF, ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250
SETUP_COMMANDS = ["make demo", "make test"]

FENCE = re.compile(r"^(\s*)(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
TRAIN = re.compile(r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:time\s+)?python3?\s+-m\s+src\.train(?=\s|$)(.*)")
SHELL_STOP = {"&&", "||", ";", "|", "&"}
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--hydra-help", "--shell-completion"}
FLAGS = {"-m", "--multirun", "--help", "-h", "--hydra-help", "--resolve", "--version", "--run", "-r"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _blocks(text: str) -> tuple[list[tuple[int, list[str]]], list[tuple[int, str]]]:
    """The fenced code blocks of a markdown text (first line number, lines) and its prose lines."""
    blocks: list[tuple[int, list[str]]] = []
    prose: list[tuple[int, str]] = []
    current: list[str] | None = None
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            if current is None:
                current, start = [], number + 1
            else:
                blocks.append((start, current))
                current = None
            continue
        if current is None:
            prose.append((number, line))
        else:
            current.append(line)
    return blocks, prose


# ---------------------------------------------------------------------------------------------- README


def test_the_readme_is_at_most_250_lines():
    lines = README.read_text().count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_README_LINES})"


def _section(text: str, heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {heading}' section"
    return match.group(1)


def test_the_readme_sets_up_with_exactly_make_demo_and_make_test():
    blocks, _ = _blocks(_section(README.read_text(), "Set up"))
    assert blocks, "the Set up section has no code block"
    commands = [line.split("#")[0].strip() for line in blocks[0][1] if line.strip()]
    assert commands == SETUP_COMMANDS


NUMBER = r"[+\-−±]?\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"({NUMBER}) [\[(]({NUMBER}), ({NUMBER})[\])]")
STUDY_ROW = re.compile(r"^\| \[[^\]]+\]\((results/[^)]+)/[^/)]+\)")


def _intervals(text: str) -> set[tuple[str, ...]]:
    """Every ``estimate [low, high]`` (or ``(low, high)``) in ``text``, signs spelled one way."""
    spell = str.maketrans({"−": "-", "±": "+"})
    return {tuple(v.translate(spell).lstrip("+") for v in m.groups()) for m in INTERVAL.finditer(text)}


def test_every_interval_the_readme_quotes_is_one_its_study_reported():
    """A finding typed into the README can go stale or be mistyped: each ``estimate [low, high]`` of a study's
    row must appear in that study's generated reports (claims.md, summary.md, …; not its hand-written NOTE)."""
    rows = [line for line in README.read_text().splitlines() if STUDY_ROW.match(line)]
    assert rows, "README.md has no study rows linking results/"
    quoted = 0
    for row in rows:
        study = ROOT / STUDY_ROW.match(row).group(1)
        reported = _intervals("\n".join(p.read_text() for p in study.glob("*.md") if p.name != "NOTE.md"))
        for interval in _intervals(row):
            assert interval in reported, f"README.md quotes {interval} for {_rel(study)}, which no report of it has"
            quoted += 1
    assert quoted >= 5


# ----------------------------------------------------------------------------------------------- links


def _links(page: Path) -> list[tuple[int, str]]:
    """Every markdown link and image target outside code, with its line number."""
    _, prose = _blocks(page.read_text())
    found = []
    for number, line in prose:
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            found.append((number, target))
    return found


def _relative(target: str) -> str | None:
    """The file part of a relative link; None for a web address, a mail address or an anchor alone."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I) or target.startswith("#"):
        return None
    return target.split("#")[0].split("?")[0] or None


def test_the_link_finder_sees_links_and_skips_code():
    text = "see [a](docs/a.md#x) and ![b](img.png), `[c](code.md)`, [d](https://x.org) and [e](#here)"
    targets = [_relative(t) for t in LINK.findall(INLINE_CODE.sub("", text))]
    assert targets == ["docs/a.md", "img.png", None, None]


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_every_relative_link_points_to_an_existing_path(page):
    missing = []
    for number, target in _links(page):
        path = _relative(target)
        if path is not None and not (page.parent / path).exists():
            missing.append(f"{_rel(page)}:{number}: {target}")
    assert not missing, "links to paths that do not exist:\n" + "\n".join(missing)


# -------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    text: str  # as written
    config_dir: str | None
    config_name: str
    overrides: tuple[str, ...]


def _split_top_level(value: str) -> list[str]:
    """A sweep value's comma-separated items, not splitting inside brackets, braces, parentheses or quotes."""
    items, depth, quote, current = [], 0, "", ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        current += char
    return [*items, current]


def parse_train(where: str, text: str) -> Command:
    """``python -m src.train [flags] [overrides]`` as the job it would compose: flags that do not change the
    config dropped, and for a multirun the first value of each swept override (one job of the sweep)."""
    match = TRAIN.search(text)
    assert match, text
    tokens = []
    for token in shlex.split(match.group(1), comments=True):
        if token in SHELL_STOP or token.startswith((">", "<", "2>", "1>")):
            break
        tokens.append(token)
    multirun = any(t in ("-m", "--multirun") for t in tokens)
    config_dir, config_name, overrides = None, "train", []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, _, inline = token.partition("=")
        if flag in ("--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn"):
            value = inline or tokens[i + 1]
            i += 1 if inline else 2
            if flag in ("--config-name", "-cn"):
                config_name = value
            else:
                config_dir = value
            continue
        if token in FLAGS_WITH_VALUE and i + 1 < len(tokens) and "=" not in tokens[i + 1]:
            i += 2  # --cfg job, --info searchpath …
            continue
        if token in FLAGS or token in FLAGS_WITH_VALUE or token.startswith("-"):
            i += 1
            continue
        if multirun and "=" in token:
            key, _, value = token.partition("=")
            token = f"{key}={_split_top_level(value)[0]}"
        overrides.append(token)
        i += 1
    return Command(where, text.strip(), config_dir, config_name, tuple(overrides))


def _train_commands() -> list[Command]:
    commands = []
    for page in PAGES:
        blocks, _ = _blocks(page.read_text())
        for start, lines in blocks:
            joined, first = "", None
            for offset, line in enumerate(lines):
                if first is None:
                    first = start + offset
                joined += line.rstrip()
                if joined.endswith("\\"):
                    joined = joined[:-1] + " "
                    continue
                if TRAIN.search(joined):
                    commands.append(parse_train(f"{_rel(page)}:{first}", joined))
                joined, first = "", None
    return commands


COMMANDS = _train_commands()


def test_the_command_parser():
    card = parse_train("x", "python -m src.train -m norm=bn,gn,ln batch=2,32   # a sweep")
    assert card.overrides == ("norm=bn", "batch=2") and card.config_dir is None and card.config_name == "train"
    study = parse_train(
        "x",
        "time python -m src.train -m hydra/launcher=slurm --config-dir sweeps --config-name demo "
        "'logger=[csv,tensorboard]' seed=0,1 --cfg job > log.txt 2>&1",
    )
    assert study.config_dir == "sweeps" and study.config_name == "demo"
    assert study.overrides == ("hydra/launcher=slurm", "logger=[csv,tensorboard]", "seed=0")
    single = parse_train("x", "python -m src.train --cfg job norm=gn 'logger=[csv,wandb]'")
    assert single.overrides == ("norm=gn", "logger=[csv,wandb]")


def test_the_readme_shows_the_card_sweep():
    shown = [c.text for c in COMMANDS if c.where.startswith("README.md")]
    assert "python -m src.train -m norm=bn,gn,ln batch=2,32" in shown


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_every_train_command_in_the_docs_composes(command):
    register_resolvers()
    overrides = experiment_choice(["src.train", *command.overrides])[1:]  # +experiment=…, as src.train reads it
    config_dir = CONF
    if command.config_dir is not None:
        config_dir = (ROOT / command.config_dir).resolve()
        overrides.insert(0, f"hydra.searchpath=[file://{CONF}]")
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(command.config_name, overrides=overrides, return_hydra_config=True)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    job = OmegaConf.to_container(cfg, resolve=True)
    assert job["norm"]["name"] and job["model"]["_target_"], command.text


# ---------------------------------------------------------------------------------------------- layout


def _layout_paths() -> list[str]:
    blocks, _ = _blocks(_section(README.read_text(), "Layout"))
    assert blocks, "the Layout section has no code block"
    return [line.split()[0] for line in blocks[0][1] if line.strip() and not line.startswith(" ")]


def test_every_path_the_layout_names_exists():
    paths = _layout_paths()
    assert "src/train.py" in paths
    missing = [p for p in paths if not (ROOT / p).exists() or (p.endswith("/") and not (ROOT / p).is_dir())]
    assert not missing, f"the README's Layout names paths that do not exist: {missing}"


def test_the_layout_names_every_top_level_module_of_src():
    named = set(_layout_paths())
    modules = [
        f"{_rel(p)}/" if p.is_dir() else _rel(p)
        for p in sorted((ROOT / "src").iterdir())
        if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")
    ]
    unnamed = [m for m in modules if m not in named]
    assert not unnamed, f"the README's Layout leaves out: {unnamed}"
