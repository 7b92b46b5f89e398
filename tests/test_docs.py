"""The repository's own documents: what the code cites exists, nothing cites documents
outside the repository, and the worked numbers in docs/sizing.md match the catalog."""

import re
from pathlib import Path

from deepseek_operator.catalog import get_model

REPO = Path(__file__).resolve().parent.parent
CHECKED = ["operator", "e2e", "tests", "charts", "manifests", "docs", "README.md"]
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".j2", ".tpl", ".txt"}


def checked_files() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = REPO / name
        files += [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
    return files


def test_nothing_cites_documents_outside_the_repository() -> None:
    outside = re.compile(r"(\.\./)?shared/(DESIGN|models)")
    citing = [str(p.relative_to(REPO)) for p in checked_files()
              if outside.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert citing == []


def test_cited_docs_exist() -> None:
    cited = {match for p in checked_files()
             for match in re.findall(r"docs/[\w.-]+\.md", p.read_text(errors="replace"))}
    assert cited >= {"docs/sizing.md", "docs/api.md"}
    assert [doc for doc in sorted(cited) if not (REPO / doc).is_file()] == []


def test_worked_kv_cache_figures_match_the_catalog() -> None:
    text = (REPO / "docs" / "sizing.md").read_text()
    for name in ("deepseek-r1", "deepseek-r1-distill-qwen-32b"):
        assert f"= {get_model(name).kv_bytes_per_token} bytes" in text, name


def test_every_condition_reason_is_in_the_troubleshooting_table() -> None:
    from deepseek_operator.api import conditions

    reasons = {value for name, value in vars(conditions).items()
               if name.startswith("REASON_") and isinstance(value, str)}
    text = (REPO / "docs" / "operations.md").read_text()
    table = text[text.index("## Troubleshooting by condition reason"):]
    assert len(reasons) >= 40
    assert sorted(r for r in reasons if f"`{r}`" not in table) == []
