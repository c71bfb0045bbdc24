"""Every published measurement is backed by a committed artifact (README.md and docs/*.md; plain file parsing,
no torch).

**Which tables.** Every markdown table outside fenced code blocks. A table *holds measurements* when a cell
(outside `code spans`, which hold commands and config values) has a number with a unit — %, s, ms, min, h,
img/s, images/s, GFLOP/s, M MACs / MMACs, a ratio `1.16×` (`28×28` and `×2` are sizes, not ratios) — or a
decimal with three or more places (`0.9074`, `1.008`), or when a column's header names a unit or a measured
quantity (`ms`, `images/s`, `%`, `ratio`, `accuracy`, `error`, `MACs`, `time`, …) and a cell of that column holds a
number.

**Weak check (every such table).** The table has an artifact: a path `docs/measurements/…`, `docs/claims/…` or `docs/zoo/…`
ending in .json, .csv, .log or .txt (a markdown link or a `code span`; relative to the page or to the
repository) in the table itself or in the text around it — the 6 non-blank lines of text before the table and
the 6 after it (lines of a fenced code block in between, typically the command, are read but not counted), not
crossing a heading (`#` line) or another table — and every such path names an existing file that git tracks (when
the checkout has git).

**Strong check (tables whose artifacts include a .json or .csv, unless listed in WEAK_ONLY).** Every measured
number of the table, except in the first column (row labels such as "ResNet-50, 128²") and in exempt columns
(the papers' or other cited sources' numbers; EXEMPT_COLUMNS), must equal a numeric leaf of the linked JSON /
CSV artifacts under one simple transform (as is, ×100 for a percentage, ÷60, ×1e3, ÷1e3, ÷1e6 for "M",
÷1e9 for "G") within the printed rounding (half a unit of the last printed digit). A speed-up printed in
parentheses after a value, `125 (1.16×)` or `102, 115 (1.31×, 1.03×)`, is derived within its row: it must
equal the quotient of the cell's own value (the k-th speed-up goes with the k-th value) and a value of another
cell of the row that was found in the artifacts (within its rounding and theirs).

**Allow-list.** ALLOWED: tables whose numbers are specifications, not measurements (recipes' hyperparameters
asserted by tests/test_recipes.py, protocol definitions, fault outcomes asserted by tests/reliability/), each
with its reason. WEAK_ONLY: tables backed by artifacts whose numbers are not JSON leaves (time logs). Each entry
names its page and the table's header row exactly; an entry that matches no table fails the test, so the lists
cannot rot.
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONTEXT_LINES = 6

# (page, header row as written, cells joined by " | ") → why the table holds no measurements
ALLOWED: dict[tuple[str, str], str] = {
    ("docs/recipes.md", "paper | `experiment=` | command (besides `data.root=`) | stated by the paper | filled in (gap)"):
        "the recipes' hyperparameters (lr, decay, 80 % error threshold of ResNet-110's warm-up), a specification "
        "asserted number by number by tests/test_recipes.py",
    ("docs/evaluation.md", "key | views per image | definition | source"):
        "the test-time protocols' definitions (crop_pct 0.875, views per image), implemented in "
        "cnnbench/evaluation/ and tested in tests/evaluation/",
    ("docs/reliability.md", "Fault | Test | Outcome"):
        "fault outcomes asserted by the named tests (tolerances, the 4× disk-space estimate of "
        "cnnbench/runtime.py), not measurements",
}
# (page, header row) → why only the weak check applies
WEAK_ONLY: dict[tuple[str, str], str] = {}
# (page, header row, column header) → why the column's numbers are not looked up in the artifacts
EXEMPT_COLUMNS: dict[tuple[str, str, str], str] = {
    ("docs/performance.md", "network | published throughput (mixed precision, A100 80GB) | pipeline | "
     "images/s per core (this run) | cores per GPU", "published throughput (mixed precision, A100 80GB)"):
        "NVIDIA's published figures, cited with their source in the text",
    ("docs/performance.md", "network | published throughput (mixed precision, A100 80GB) | pipeline | "
     "images/s per core (this run) | cores per GPU", "cores per GPU"):
        "derived: the published throughput ÷ the measured per-core rate (both columns beside it)",
    ("docs/zoo.md", "network | parameters | MACs / image | input | recipe (`experiment=`) | epochs | test top-1 (10k) | "
     "public benchmark | wall time, CPU | command | artifact", "public benchmark"):
        "the dataset's public benchmark table (zalandoresearch/fashion-mnist README, cited in the text)",
}
PAPER_COLUMN = re.compile(r"\bpaper", re.I)  # a column holding the papers' own numbers

ARTIFACT = re.compile(r"(?:\.\./)?(?:docs/)?(?:measurements|claims|zoo)/[\w.\-/]+?\.(?:json|csv|log|txt)\b")
NUM = r"(?<![\w.\-])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"  # 1,049 and 0.9074, not "134," of "134, 119"
UNIT = re.compile(NUM + r"(?=\s?(?:%|ms\b|s\b|min\b|h\b|img/s|images/s|[GMT]FLOP/s|M\s?MACs|MMACs|GMACs"
                        r"|×(?!\s?\d)))")
DECIMAL = re.compile(r"(?<![\w.])[01]\.\d{3,}(?![\d])")
BARE = re.compile(NUM + r"(?![\d²³×x]|\.\d)")
PARENS = re.compile(r"\([^()]*\)")
SPEED_UP = re.compile(NUM + r"(?=\s?×)")
HEADER_UNIT = re.compile(r"\bms\b|images/s|img/s|per core|%|\bratio|accuracy|top-[15]|\berror|\bMACs|MMACs|"
                         r"GFLOP|\bMFU\b|\bvs\b|\btime\b|throughput|speed-up|(?<!')\bs\b|\bmin\b", re.I)
TRANSFORMS = (1.0, 100.0, 1 / 60, 1e3, 1e-3, 1e-6, 1e-9)


@dataclass
class Table:
    page: str
    line: int  # 1-based line of the header row
    header: list[str]
    rows: list[list[str]]
    context: str  # the text around the table that may name its artifacts
    raw: str = field(repr=False, default="")

    @property
    def key(self) -> tuple[str, str]:
        return self.page, " | ".join(self.header)


def split_row(line: str) -> list[str]:
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") else text
    cells, current, in_code = [], "", False
    for ch in text:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += ch
    cells.append(current.strip())
    return cells


def parse_tables(text: str, page: str) -> list[Table]:
    lines = text.splitlines()
    fenced, in_fence = [], False
    for line in lines:
        if line.strip().startswith("```"):
            in_fence = not in_fence
            fenced.append(True)
        else:
            fenced.append(in_fence)
    tables, i = [], 0
    while i < len(lines) - 1:
        if (not fenced[i] and lines[i].lstrip().startswith("|")
                and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1])):
            start, end = i, i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            header = split_row(lines[start])
            rows = [split_row(row) for row in lines[start + 2:end]]
            tables.append(Table(page, start + 1, header, rows, _context(lines, fenced, start, end),
                                "\n".join(lines[start:end])))
            i = end
        else:
            i += 1
    return tables


def _context(lines: list[str], fenced: list[bool], start: int, end: int) -> str:
    def near(indices) -> list[str]:
        taken, counted = [], 0
        for j in indices:
            line = lines[j]
            if not fenced[j] and (line.lstrip().startswith("#") or line.lstrip().startswith("|")):
                break  # a heading ends the section; another table's text is its own
            if line.strip():
                taken.append(line)
                counted += not fenced[j]  # a command block between the text and the table does not count
                if counted == CONTEXT_LINES:
                    break
        return taken

    return "\n".join(near(range(start - 1, -1, -1)) + near(range(end, len(lines))))


def prose(cell: str) -> str:
    """A cell without code spans, link targets and emphasis."""
    cell = re.sub(r"`[^`]*`", " ", cell)
    cell = re.sub(r"\]\([^)]*\)", "]", cell)
    return cell.replace("*", "")


def number(text: str) -> float:
    return float(text.replace(",", ""))


def decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def measured_numbers(table: Table) -> list[tuple[int, int, str, bool]]:
    """(row, column, number as printed, derived?) for every measured number of the table."""
    unit_columns = {c for c, h in enumerate(table.header) if HEADER_UNIT.search(prose(h))}
    found = []
    for r, row in enumerate(table.rows):
        for c, cell in enumerate(row):
            text = prose(cell)
            derived = {p.start() + m.start() for p in PARENS.finditer(text) for m in SPEED_UP.finditer(p.group(0))}
            spans: dict[int, str] = {}
            for pattern in (UNIT, DECIMAL) + ((BARE,) if c in unit_columns else ()):
                for m in pattern.finditer(text):
                    spans.setdefault(m.start(), m.group(0))
            found += [(r, c, spans[s], s in derived) for s in sorted(spans)]
    return found


def artifact_paths(table: Table) -> list[str]:
    return sorted(set(ARTIFACT.findall(table.raw + "\n" + table.context)))


def resolve(page: str, link: str) -> Path:
    for base in (ROOT / page).parent, ROOT, ROOT / "docs":
        candidate = (base / link).resolve()
        if candidate.exists():
            return candidate
    return (ROOT / link).resolve()


@functools.lru_cache(maxsize=1)
def tracked_files() -> frozenset[Path] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "docs"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None  # no git (an exported tree): existence is all that can be checked
    return frozenset((ROOT / p).resolve() for p in out.decode().split("\0") if p)


def numeric_leaves(path: Path) -> list[float]:
    text = path.read_text()
    values: list[float] = []
    if path.suffix == ".json":
        def walk(v):
            if isinstance(v, bool) or v is None:
                return
            if isinstance(v, (int, float)):
                if math.isfinite(v):
                    values.append(float(v))
            elif isinstance(v, dict):
                for x in v.values():
                    walk(x)
            elif isinstance(v, list):
                for x in v:
                    walk(x)
        walk(json.loads(text))
    elif path.suffix == ".csv":
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                try:
                    values.append(float(cell))
                except ValueError:
                    pass
    return values


def matches(printed: str, leaves: list[float]) -> bool:
    value, tol = number(printed), 0.5 * 10 ** -decimals(printed) + 1e-9
    # the relative slack absorbs float32 leaves: 0.2385 stored as 0.23849999… still prints as 23.9 %
    return any(abs(leaf * t - value) <= tol + 1e-6 * abs(value) for leaf in leaves for t in TRANSFORMS)


def _quotient_close(value: float, tol: float, a: float, da: float, b: float, db: float) -> bool:
    """a/b of two rounded numbers (roundings da, db) carries their rounding: a/b · (da/a + db/b)."""
    return bool(a and b) and abs(a / b - value) <= tol + a / b * (da / a + db / b)


def problems(table: Table, tracked: frozenset[Path] | None) -> list[str]:
    if table.key in ALLOWED:
        return []
    numbers = measured_numbers(table)
    exempt = {c for c, h in enumerate(table.header)
              if PAPER_COLUMN.search(h) or (table.page, " | ".join(table.header), h) in EXEMPT_COLUMNS}
    numbers = [n for n in numbers if n[1] not in exempt]
    if not numbers:
        return []
    links = artifact_paths(table)
    if not links:
        shown = ", ".join(sorted({n[2] for n in numbers})[:6])
        return [f"measured numbers ({shown}, …) but no artifact under docs/measurements/, docs/claims/ or docs/zoo/ "
                f"linked in the table or within {CONTEXT_LINES} lines around it"]
    out, files = [], []
    for link in links:
        path = resolve(table.page, link)
        if not path.is_file():
            out.append(f"links {link}, which does not exist")
        elif tracked is not None and path not in tracked:
            out.append(f"links {link}, which git does not track")
        else:
            files.append(path)
    if out or table.key in WEAK_ONLY:
        return out
    leaves = [v for f in files if f.suffix in (".json", ".csv") for v in numeric_leaves(f)]
    if not leaves:
        return out  # time logs only: the weak check is all there is
    found: dict[int, list[tuple[float, float]]] = {}  # row → (value, its rounding) of the numbers found
    own: dict[tuple[int, int], list[tuple[float, float]]] = {}  # (row, column) → the cell's own values, in order
    missing = []
    for r, c, printed, derived in numbers:
        if c == 0 or derived:
            continue
        if matches(printed, leaves):
            found.setdefault(r, []).append((number(printed), 0.5 * 10 ** -decimals(printed)))
            own.setdefault((r, c), []).append(found[r][-1])
        else:
            missing.append(f"row {r + 1} '{table.header[c] if c < len(table.header) else c}': {printed}")
    k_in_cell: dict[tuple[int, int], int] = {}
    for r, c, printed, derived in numbers:
        if not derived or c == 0:
            continue
        k = k_in_cell[(r, c)] = k_in_cell.get((r, c), -1) + 1
        cell = own.get((r, c), [])
        mine = [cell[k]] if k < len(cell) else cell  # the k-th speed-up belongs to the cell's k-th value
        others = [v for v in found.get(r, []) if v not in cell]  # another cell's value: the base
        value, tol = number(printed), 0.5 * 10 ** -decimals(printed) + 1e-9

        if not any(_quotient_close(value, tol, b, db, a, da) or _quotient_close(value, tol, a, da, b, db)
                   for a, da in mine for b, db in others):
            missing.append(f"row {r + 1} '{table.header[c]}': derived {printed}× is no quotient of the cell's value "
                           "and another value of its row")
    if missing:
        out.append(f"numbers not found in {', '.join(str(f.relative_to(ROOT)) for f in files)}: " + "; ".join(missing[:8])
                   + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""))
    return out


ALL_TABLES = [t for doc in DOCS for t in parse_tables(doc.read_text(), str(doc.relative_to(ROOT)))]


@pytest.mark.parametrize("table", ALL_TABLES, ids=[f"{t.page}:{t.line}" for t in ALL_TABLES])
def test_every_measured_table_has_an_artifact(table):
    found = problems(table, tracked_files())
    assert not found, f"{table.page}:{table.line} table '{' | '.join(table.header)[:90]}': " + " / ".join(found)


def test_every_list_entry_names_an_existing_table():
    keys = {t.key for t in ALL_TABLES}
    stale = [k for k in (*ALLOWED, *WEAK_ONLY) if k not in keys]
    stale += [k for k in EXEMPT_COLUMNS if k[:2] not in keys or k[2] not in k[1].split(" | ")]
    assert not stale, f"allow-list entries that match no table (header changed?): {stale}"


# -- the rule itself, on made-up pages --------------------------------------------------------------------


def test_detection_tells_measurements_from_sizes_and_commands():
    text = ("| model | size | command | fp32 CPU ms | top-1 |\n|---|---|---|---|---|\n"
            "| resnet20 | 28×28, ×2 | `benchmark.steps=3 0.9074` | 145 (1.16×) | 0.9074 |\n")
    (table,) = parse_tables(text, "x.md")
    assert [(c, p, d) for _, c, p, d in measured_numbers(table)] == [(3, "145", False), (3, "1.16", True), (4, "0.9074", False)]
    spec = parse_tables("| key | value |\n|---|---|\n| batch | 128 on 28×28 images, `lr=0.1` |\n", "x.md")[0]
    assert measured_numbers(spec) == []


def test_a_table_without_artifact_fails_and_the_strong_check_compares_values(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    body = "| run | time | ratio |\n|---|---|---|\n| a | 2.9 s | 1.008 |\n"
    assert "no artifact" in problems(parse_tables(body, "page.md")[0], None)[0]
    (tmp_path / "measurements").mkdir()
    (tmp_path / "measurements" / "m.json").write_text(json.dumps({"cpu_ms": 2876.0, "ratio": [1.0081, 0.99]}))
    linked = parse_tables("From [the run](measurements/m.json):\n\n" + body, "page.md")[0]
    assert problems(linked, None) == []
    wrong = parse_tables("From [the run](measurements/m.json):\n\n" + body.replace("1.008", "1.018"), "page.md")[0]
    assert "1.018" in problems(wrong, None)[0]
    gone = parse_tables("From `measurements/other.json`:\n\n" + body, "page.md")[0]
    assert "does not exist" in problems(gone, None)[0]


def test_derived_speed_up_must_be_a_quotient_of_its_row(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "measurements").mkdir()
    (tmp_path / "measurements" / "m.json").write_text(json.dumps({"a": 145.2, "b": 125.1}))
    good = "See `measurements/m.json`.\n\n| model | fp32 ms | channels_last ms |\n|---|---|---|\n| r | 145 | 125 (1.16×) |\n"
    assert problems(parse_tables(good, "page.md")[0], None) == []
    bad = good.replace("1.16×", "1.30×")
    assert "derived 1.30" in problems(parse_tables(bad, "page.md")[0], None)[0]
