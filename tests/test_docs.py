"""Documentation that cannot rot: every relative link and image in the README and docs/ resolves
(files and #anchors), and every `annorm ...` command line in them parses against the real CLI
(options, their values' types and the arguments accepted; nothing is run)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import typer

from annorm_cli.cli.app import app

try:                                                   # typer >= 0.16 carries its own copy of click
    from typer._click.exceptions import UsageError as TyperUsageError
except ImportError:                                    # pragma: no cover
    TyperUsageError = click.UsageError
USAGE_ERRORS = (click.UsageError, TyperUsageError)

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*\bsrc=\"([^\"]+)\"")
FENCE = re.compile(r"```(?:bash|sh|console)?\n(.*?)```", re.S)     # shell blocks: their commands
ANY_FENCE = re.compile(r"```[^\n]*\n.*?```", re.S)                   # any block: no links or headings in it
INLINE = re.compile(r"`(annorm [^`]+)`")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = ANY_FENCE.sub("", page.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = ANY_FENCE.sub("", page.read_text())
    return [a or b for a, b in LINK.findall(text)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):                      # http(s), mailto: not checked offline
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_link_check_finds_a_broken_link_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n[a](missing.md) ![b](pic.png) [c](#top) [d](#nowhere)\n")
    (tmp_path / "pic.png").write_bytes(b"")
    assert links(page) == ["missing.md", "pic.png", "#top", "#nowhere"]
    assert anchors(page) == {"top"}


def command_lines(text: str) -> list[str]:
    """The `annorm ...` invocations of a page: in code blocks (comments dropped, continuations
    joined, each command of a `&&` chain) and in inline code."""
    found = []
    for block in FENCE.findall(ANY_FENCE.sub(lambda m: m.group(0) if re.match(r"```(bash|sh|console)?\n", m.group(0))
                                             else "", text)):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "||", ";", "|"):
                    if command[:1] == ["annorm"]:
                        found.append(shlex.join(command))
                    command = []
                else:
                    command.append(word)
    found += [m for m in INLINE.findall(text) if "..." not in m]
    return found


def parse(line: str) -> None:
    """Parse an `annorm ...` line with the real command tree; raises a UsageError."""
    words = shlex.split(line)[1:]
    command = typer.main.get_command(app)
    context = None
    while hasattr(command, "get_command") and words and not words[0].startswith("-"):
        context = command.make_context(command.name, [words[0]], parent=context)
        sub = command.get_command(context, words[0])
        if sub is None:
            raise TyperUsageError(f"no command {words[0]!r}")
        command, words = sub, words[1:]
    if "--help" in words or not words:                # a command named in prose: that it exists is the check
        return
    command.make_context(command.name, words, parent=context)


COMMANDS = sorted({(page.relative_to(ROOT).as_posix(), line) for page in PAGES
                   for line in command_lines(page.read_text())})


def test_the_pages_hold_command_lines():
    assert len(COMMANDS) > 40
    assert any(line.startswith("annorm generate --class all") for _, line in COMMANDS)


@pytest.mark.parametrize("page,line", COMMANDS)
def test_every_command_line_in_the_docs_parses(page, line):
    try:
        parse(line)
    except USAGE_ERRORS as exc:
        pytest.fail(f"{page}: `{line}`: {exc.format_message()}")


@pytest.mark.parametrize("line", ["annorm generate --clas cat", "annorm inpaint a.png", "annorm generate --num many",
                                  "annorm evaluate fidd", "annorm train inpaint --out r --d-layers x"])
def test_the_command_check_fails_on_a_wrong_line(line):
    with pytest.raises(USAGE_ERRORS):
        parse(line)
