"""The package's source names no test machine, date or result file: measurements live in docs/dev/decisions/,
which the code points to by number (issue 33)."""

from __future__ import annotations

import re

from conftest import ROOT

# machine names, dates and the result files of one machine's runs
FORBIDDEN = re.compile(r"h[12]00-[a-z0-9-]+\.(json|log|txt)|H100|H200|2026-")


def test_source_names_no_machine_date_or_result_file():
    found = []
    for path in sorted((ROOT / "batchscore").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".c", ".h", ".toml", ".txt", ".json"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if FORBIDDEN.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "move these to a decision record and point to it:\n" + "\n".join(found)


def test_decision_records_the_code_cites_exist():
    cited = set()
    for path in (ROOT / "batchscore").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".c"):
            cited |= set(re.findall(r"docs/dev/decisions/(\d{4})", path.read_text(encoding="utf-8")))
    records = {p.name[:4] for p in (ROOT / "docs" / "dev" / "decisions").glob("[0-9][0-9][0-9][0-9]-*.md")}
    assert cited <= records, f"the code cites decision records that do not exist: {sorted(cited - records)}"
