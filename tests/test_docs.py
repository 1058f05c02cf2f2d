"""The documentation points only at things that exist: README.md and every page under docs/.

What is checked, in ``README.md`` and every ``docs/**/*.md`` of a repository root (``check_docs(root)``):

1. **Links.** Every markdown link ``[text](target)`` and image ``![alt](target)`` outside code (fenced blocks
   and inline code spans are not prose) whose target is not ``http://``, ``https://`` or ``mailto:``. The
   target is resolved against the folder of the page that holds it, after its ``#anchor`` (and any
   ``?query``) is cut off; the file or folder must exist. A pure anchor (``#section``) points into the page
   itself and is checked as an anchor only.
2. **Anchors.** A link's ``#anchor`` into a markdown page (the page itself, or another ``.md`` it names)
   must be the GitHub slug of one of that page's headings: lower-cased, markup characters (`` ` ``, ``*``,
   a link's brackets and target) dropped, every character that is not a letter, digit, space or hyphen
   removed, spaces turned into hyphens; a repeated heading gets ``-1``, ``-2`` ...
3. **Repository paths in code.** Code means every inline code span and every line of a fenced block. Its
   text is split on whitespace; each word is stripped of surrounding quotes, brackets and ``,;:`` and of a
   trailing ``.``. A word is a *repository path* when it starts with one of ``REPO_PREFIXES`` (``src/``,
   ``tests/``, ``benchmarks/``, ``docs/``, ``scripts/``, ``.ci/``) or is one of ``ROOT_FILES``
   (``Makefile``, ``pyproject.toml``, ``README.md``); it must exist relative to the root. So run outputs
   (``runs/...``, ``.venv``, ``/tmp/...``, ``m.onnx``, ``ROOT``) are never checked: they are not repository
   paths. Further exceptions, all deliberate:

   * a word right after an output option (``OUTPUT_OPTIONS``: ``--out``, ``--markdown``, ``--report``,
     ``--int8``, ``--keep``, ``-o``) or after ``>`` / ``>>`` is something a command *writes*, not a reference;
   * a word holding a placeholder (``...``, ``…``, ``<``, ``>``, ``{``, ``}``, ``$``, ``|``, ``=``) is
     skipped (``src/robustreid/...`` names a folder's contents, not a file);
   * a word with ``*`` is a glob: at least one file must match it;
   * ``path.py::name`` (a pytest node id, ``[param]`` cut off) needs the file *and* a ``def name`` /
     ``class name`` in it (``name`` ending in ``*``: a prefix).

4. **The index.** Every ``docs/*.md`` page is linked from ``docs/README.md``.

A problem is one line, ``PAGE:LINE: what``, so a failure names every broken reference at once. The checker
is ``check_docs(root)``; the last tests run it on made-up pages and on deliberately broken copies of the real
ones in a temporary folder, so it is known to fail when it should.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REPO_PREFIXES = ("src/", "tests/", "benchmarks/", "docs/", "scripts/", ".ci/")
ROOT_FILES = ("Makefile", "pyproject.toml", "README.md")
OUTPUT_OPTIONS = ("--out", "--markdown", "--report", "--int8", "--keep", "-o", ">", ">>")
PLACEHOLDERS = ("...", "…", "<", ">", "{", "}", "$", "|", "=")
SKIPPED_SCHEMES = ("http://", "https://", "mailto:")

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_pages(root: Path) -> list[Path]:
    """README.md and every markdown page under docs/ (sorted, so reports are stable)."""
    pages = [root / "README.md"] if (root / "README.md").exists() else []
    return pages + sorted((root / "docs").rglob("*.md"))


def split_code(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(prose lines, code pieces)``, each as ``(line number, text)``: fenced lines are code; in prose lines,
    inline code spans are cut out (blanked) and returned as code pieces."""
    prose, code = [], []
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            code.append((number, line))
            continue
        code.extend((number, m.group(2)) for m in _INLINE_CODE.finditer(line))
        prose.append((number, _INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)))
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)    # a link in a heading keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives ``page``'s headings (outside fenced code)."""
    found: set[str] = set()
    repeats: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            base = slug(m.group(2))
            if base in repeats:
                repeats[base] += 1
                found.add(f"{base}-{repeats[base]}")
            else:
                repeats[base] = 0
                found.add(base)
    return found


def check_links(root: Path, page: Path, prose: list[tuple[int, str]]) -> list[str]:
    problems = []
    where = page.relative_to(root).as_posix()
    for number, line in prose:
        for m in _LINK.finditer(line):
            target = m.group(1)
            if target.startswith(SKIPPED_SCHEMES):
                continue
            path_part, _, anchor = target.partition("#")
            path_part = path_part.split("?", 1)[0]
            resolved = (page.parent / path_part).resolve() if path_part else page
            if path_part and not resolved.exists():
                problems.append(f"{where}:{number}: link to a missing file: {target}")
                continue
            if anchor and resolved.suffix == ".md" and resolved.is_file() and anchor not in anchors(resolved):
                problems.append(f"{where}:{number}: link to a missing anchor: {target}")
    return problems


def _clean(word: str) -> str:
    word = word.strip("'\"()[]{},;:")
    return word[:-1] if word.endswith(".") and not word.endswith("..") else word


def _is_repo_path(word: str) -> bool:
    return word.startswith(REPO_PREFIXES) or word in ROOT_FILES


def _has_definition(file: Path, name: str) -> bool:
    name = name.split("[", 1)[0]
    pattern = re.escape(name[:-1]) + r"\w*" if name.endswith("*") else re.escape(name) + r"\b"
    definition = re.compile(rf"^\s*(?:async\s+)?(?:def|class)\s+{pattern}", re.MULTILINE)
    return definition.search(file.read_text(encoding="utf-8")) is not None


def check_code_paths(root: Path, page: Path, code: list[tuple[int, str]]) -> list[str]:
    problems = []
    where = page.relative_to(root).as_posix()
    for number, text in code:
        words = text.split()
        for i, raw in enumerate(words):
            if i and words[i - 1] in OUTPUT_OPTIONS:
                continue
            word = _clean(raw)
            path_part, _, node = word.partition("::")
            if not _is_repo_path(path_part) or any(p in path_part for p in PLACEHOLDERS):
                continue
            if "*" in path_part:
                if not any(root.glob(path_part)):
                    problems.append(f"{where}:{number}: no file matches {path_part}")
                continue
            target = root / path_part
            if not target.exists():
                problems.append(f"{where}:{number}: missing repository path {path_part}")
            elif node and target.is_file() and not _has_definition(target, node):
                problems.append(f"{where}:{number}: {path_part} defines no {node}")
    return problems


def check_docs(root: str | os.PathLike) -> list[str]:
    """Every problem of the documentation under ``root`` (README.md and docs/), one line each."""
    root = Path(root).resolve()
    problems = []
    for page in doc_pages(root):
        prose, code = split_code(page.read_text(encoding="utf-8"))
        problems += check_links(root, page, prose)
        problems += check_code_paths(root, page, code)
    return problems


# ---- the repository's own documentation -------------------------------------------------------------------


def test_readme_and_docs_exist():
    pages = {p.relative_to(ROOT).as_posix() for p in doc_pages(ROOT)}
    for name in ("README", "GETTING_STARTED", "MODEL_ZOO", "TRAINING", "EVALUATION", "DEPLOYMENT", "TRACKING",
                 "REPRODUCTION", "PAPER_TO_CODE", "TROUBLESHOOTING", "BENCHMARKS"):
        assert f"docs/{name}.md" in pages
    assert "README.md" in pages


def test_every_link_and_repository_path_exists():
    problems = check_docs(ROOT)
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_reachable_from_the_index():
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    linked = {m.group(1).split("#", 1)[0] for m in _LINK.finditer(index)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "README.md":
            assert page.name in linked, f"docs/README.md does not link {page.name}"


# ---- the checker itself: it must be able to fail -----------------------------------------------------------


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_checker_reports_each_kind_of_broken_reference(tmp_path):
    _write(tmp_path / "src" / "pkg" / "mod.py", "def real():\n    pass\n\nclass Thing:\n    pass\n")
    _write(tmp_path / "tests" / "test_mod.py", "def test_real_one():\n    pass\n")
    _write(tmp_path / "docs" / "GUIDE.md", "# Guide\n\n## Two words\n\n## Two words\n")
    _write(tmp_path / "README.md", """\
# Title
[ok](docs/GUIDE.md) [ok anchor](docs/GUIDE.md#two-words) [second](docs/GUIDE.md#two-words-1)
[gone](docs/MISSING.md) ![gone picture](docs/missing.png) [web](https://example.org/x.md)
[bad anchor](docs/GUIDE.md#no-such-heading) [self](#title) [self bad](#nowhere)
Code: `src/pkg/mod.py`, `src/pkg/absent.py`, `tests/test_mod.py::test_real_one`,
`tests/test_mod.py::test_gone`, `tests/test_*.py`, `tests/nothing_*.py`, `src/pkg/...`,
`runs/demo/last.pt`, `.venv`, `pyproject.toml`, `src/pkg/mod.py::Thing`, `[gone](in/code.md)`.
```bash
python benchmarks/absent.py --out docs/new_output.png --keep scripts/also_written > tests/log.txt
```
""")
    assert sorted(check_docs(tmp_path)) == sorted([
        "README.md:3: link to a missing file: docs/MISSING.md",
        "README.md:3: link to a missing file: docs/missing.png",
        "README.md:4: link to a missing anchor: docs/GUIDE.md#no-such-heading",
        "README.md:4: link to a missing anchor: #nowhere",
        "README.md:5: missing repository path src/pkg/absent.py",
        "README.md:6: tests/test_mod.py defines no test_gone",
        "README.md:6: no file matches tests/nothing_*.py",
        "README.md:7: missing repository path pyproject.toml",
        "README.md:9: missing repository path benchmarks/absent.py",
    ])


def test_checker_finds_a_broken_link_in_a_copy_of_the_real_docs(tmp_path):
    """The real README and docs, copied next to links to the real source tree, pass; a link and a repository
    path broken in the copy are reported, and nothing else."""
    for name in ("src", "tests", "benchmarks", "scripts", ".ci", "Makefile", "pyproject.toml"):
        if (ROOT / name).exists():
            (tmp_path / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    assert check_docs(tmp_path) == []

    def break_once(page: Path, old: str, new: str) -> None:
        text = page.read_text(encoding="utf-8")
        assert old in text
        page.write_text(text.replace(old, new, 1), encoding="utf-8")

    break_once(tmp_path / "README.md", "](docs/TRAINING.md", "](docs/TRAINNG.md")
    break_once(tmp_path / "docs" / "BENCHMARKS.md", "`benchmarks/short_run.py`", "`benchmarks/shortrun.py`")
    problems = check_docs(tmp_path)
    assert len(problems) == 2, problems
    assert "README.md" in problems[0] and "link to a missing file: docs/TRAINNG.md" in problems[0]
    assert "docs/BENCHMARKS.md" in problems[1]
    assert "missing repository path benchmarks/shortrun.py" in problems[1]


@pytest.mark.parametrize("heading, expected", [
    ("The two commands", "the-two-commands"),
    ("`make bench`: every script", "make-bench-every-script"),
    ("Table 5 shape (street, room)", "table-5-shape-street-room"),
    ("History: the 3-epoch demo", "history-the-3-epoch-demo"),
    ("Speed × accuracy ± spread", "speed--accuracy--spread"),
])
def test_slug_follows_github(heading, expected):
    assert slug(heading) == expected
