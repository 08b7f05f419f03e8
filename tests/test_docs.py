"""Docs the code cites are in the repository: every file a source comment or doc names exists,
every section cited as ``docs/<page>.md, "Section"`` is a heading there, and no comment points at an
issue number (a reader of the code cannot open it)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for folder in ("siftc", "passes", "models_zoo", "tests", "docs") for p in (ROOT / folder).rglob("*")
           if p.suffix in (".py", ".md") and "golden" not in p.parts] + [ROOT / "README.md"]
# a path-like name of a markdown or Python file of this repository
CITED_FILE = re.compile(r"(?<![\w/.])((?:docs|passes|siftc|models_zoo|tests)/[\w/]+\.(?:md|py))")
CITED_SECTION = re.compile(r"(docs/\w+\.md), \"([^\"]+)\"")
ISSUE = re.compile(r"\bissue ?#?\d+", re.IGNORECASE)


def _cited_files():
    for src in SOURCES:
        for m in CITED_FILE.finditer(src.read_text()):
            yield src, m.group(1)


def test_every_cited_file_exists():
    missing = sorted({f"{src.relative_to(ROOT)} cites {name}" for src, name in _cited_files()
                      if not (ROOT / name).exists()})
    assert not missing, "\n".join(missing)


def test_the_checker_sees_citations():
    names = {name for _, name in _cited_files()}
    assert {"docs/method.md", "docs/architecture.md", "docs/measurements.md", "passes/README.md"} <= names


def test_cited_sections_exist():
    bad = []
    for src in SOURCES:
        for m in CITED_SECTION.finditer(src.read_text()):
            doc, section = m.group(1), " ".join(m.group(2).split())   # a citation may wrap
            if section == "...":          # the citation format, as written in docs/method.md itself
                continue
            headings = {line.lstrip("#").strip() for line in (ROOT / doc).read_text().splitlines()
                        if line.startswith("#")}
            if section not in headings:
                bad.append(f"{src.relative_to(ROOT)}: {doc} has no section {section!r}")
    assert not bad, "\n".join(bad)


def test_no_comment_points_at_an_issue_number():
    hits = [f"{src.relative_to(ROOT)}:{i}: {line.strip()}" for src in SOURCES if src.suffix == ".py"
            and src.name != "test_docs.py"
            for i, line in enumerate(src.read_text().splitlines(), 1) if ISSUE.search(line)]
    assert not hits, "\n".join(hits)


def test_the_pass_table_in_docs_matches_the_registry():
    """docs/architecture.md's pass table says what each pass registered: kind, last, requires, policy keys."""
    from siftc import passes
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`") and cells[0].strip("`") in passes.PASSES:
            rows[cells[0].strip("`")] = cells
    assert sorted(rows) == sorted(passes.TRAIN_PIPELINE.split(",") + ["lower-inference", "export-onnx"])
    for name, (_, kind, requires, keys) in rows.items():
        info = passes.get_pass(name)
        assert kind == info.kind + (", last" if info.last else ""), name
        assert [r.strip() for r in requires.split(",") if r.strip() not in ("", "-")] == list(info.requires), name
        assert [k.strip().strip("`") for k in keys.split(",") if k.strip()] == list(info.policy_keys), name
