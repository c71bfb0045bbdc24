"""A YAML comment under conf/ that quotes one of its own file's keys with a value says what the file sets.

The rot this catches: a header such as "SGD with momentum 0.9, weight decay 1e-4" above `weight_decay: 5.0e-4`,
or "shortcut=B stride_in_1x1=false" above `stride_in_1x1: true`. Plain file parsing (PyYAML), no torch.

**What counts as a quote.** In the text of every comment (a whole `#` line or the part after ` #` on a value
line), outside `code spans` (commands and overrides a reader may type, which legitimately differ from the
file), a *key* followed by a *value*:

- `key=value`, `key: value`, `key = value` or `key value`, where key is a key of the same file (its last
  component, or a dotted tail such as `schedule.pct_start`), or the same words with spaces for underscores
  ("weight decay 1e-4" → `weight_decay`, "label smoothing 0.1" → `label_smoothing`);
- value a number (`0.9`, `1e-4`, `5.0e-4`, `-1`, `1,600`) or a boolean (`true`/`false`). A number followed
  by a unit or a multiplier (`4 px`, `64k`, `20 %`, `3×`) is a size or a range, not the key's value.

The quoted value must equal the file's value for that key (numbers numerically, booleans as booleans). When
several keys of the file share the name (`lr` under two groups), one of them must match.

**Clauses that cite another value on purpose are exempt.** A comment often names a value that differs from
the file's and says so: the paper's number beside a reduced one, an example, a previous value. A clause — the
comment text between `;`, `.` + space, `(`, `)` and ` — ` — is skipped when it contains one of EXEMPT_WORDS.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A sentence with one of these words names a value other than the file's on purpose.
EXEMPT_WORDS = re.compile(
    r"\b(?:paper(?:'s|s'|s)?|reduced|was|were|instead|rather than|vs|earlier|previous(?:ly)?|first configuration|replaced|"
    r"otherwise|unlike|example|recipe sets)\b|e\.g\.", re.I)
NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)(?:e[-+]?\d+)?"
# a number followed by a unit, a multiplier or an operator is a size, a range or a formula, not the key's value
NOT_A_VALUE = r"(?![\w%×·/²³]|\.\d|\s?(?:%|×|px\b|k\b|M\b|[−+\-*/]\s))"
VALUE = re.compile(rf"(?P<value>(?:{NUMBER}|true|false)){NOT_A_VALUE}", re.I)
# sentences end at ";", " — ", "): " and a full stop (not the one of "e.g.", "i.e.", "et al.", "cf.", "vs.")
SENTENCE_SPLIT = re.compile(r";|(?<!\be\.g)(?<!\bi\.e)(?<!\bal)(?<!\bcf)(?<!\bvs)\.(?:\s|$)|(?<=\)): | — ")
VERBATIM = re.compile(r"`[^`]*`|\"[^\"]*\"|“[^”]*”")  # code spans (overrides to type) and quoted passages


def flatten(node, prefix: str = "") -> dict[str, object]:
    """Dotted key → scalar value (lists are skipped: their items have no key to quote)."""
    out: dict[str, object] = {}
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict):
                out.update(flatten(v, key))
            elif not isinstance(v, list):
                out[key] = v
    return out


def comments(text: str) -> list[tuple[int, str]]:
    """(first line, comment text) for every comment: a run of whole-line comments is one text (a header's
    sentence may go on over several lines), a comment after a value is its own. A `#` inside quotes is none."""
    found: list[tuple[int, str]] = []
    block_open = False
    for number, line in enumerate(text.splitlines(), 1):
        quote, body = None, None
        for i, ch in enumerate(line):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"" and (i == 0 or line[i - 1] in " :[,{"):
                quote = ch
            elif ch == "#" and (i == 0 or line[i - 1].isspace()):
                body = line[i + 1:].strip()
                break
        whole_line = body is not None and not line[:line.index("#")].strip()
        if body is None or body.startswith("@package"):
            block_open = False
            continue
        if whole_line and block_open:
            found[-1] = (found[-1][0], found[-1][1] + " " + body)
        else:
            found.append((number, body))
        block_open = whole_line
    return found


def key_pattern(keys: list[str]) -> re.Pattern[str]:
    """A key of the file as a comment may write it: dotted tail, plain leaf, or words for underscores."""
    names = set()
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts)):
            tail = ".".join(parts[i:])
            names.add(re.escape(tail))
            if "_" in tail and "." not in tail:
                names.add(re.escape(tail).replace("_", r"[ _]"))
    alternatives = "|".join(sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![\w.\-])(?P<key>{alternatives})(?:\s*[=:]\s*|\s+)(?=[-+.\dtf])", re.I)


def as_value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return float(text.replace(",", ""))


def equal(quoted: object, actual: object) -> bool:
    if isinstance(quoted, bool) or isinstance(actual, bool):
        return quoted is actual
    if isinstance(actual, (int, float)):
        return math.isclose(float(quoted), float(actual), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(actual, str):  # "1e-4" (a string to YAML 1.1), or a count with its unit ("2 GPUs")
        head = actual.split()[0] if actual.split() else ""
        try:
            return math.isclose(float(quoted), float(head), rel_tol=1e-9)
        except ValueError:
            return False
    return False


def quotes(text: str) -> list[tuple[int, str, str, list[object]]]:
    """(line, key as written, value as written, the file's values for that key) for every quote in a comment."""
    values = flatten(yaml.safe_load(text) or {})
    if not values:
        return []
    pattern = key_pattern(list(values))
    found = []
    for number, body in comments(text):
        for sentence in SENTENCE_SPLIT.split(VERBATIM.sub(" ", body)):
            if EXEMPT_WORDS.search(sentence):
                continue
            for m in pattern.finditer(sentence):
                v = VALUE.match(sentence, m.end())
                if not v:
                    continue
                written = m.group("key").replace(" ", "_").lower()
                actual = [val for k, val in values.items()
                          if k.lower() == written or k.lower().endswith("." + written)]
                if actual:
                    found.append((number, m.group("key"), v.group("value"), actual))
    return found


def contradictions(text: str) -> list[str]:
    return [f"line {line}: comment says {key} {value}, the file sets {' or '.join(map(str, actual))}"
            for line, key, value, actual in quotes(text)
            if not any(equal(as_value(value), a) for a in actual)]


FILES = sorted(CONF.rglob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CONF)) for p in FILES])
def test_comments_quote_the_files_own_values(path):
    found = contradictions(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: " + "; ".join(found)


def test_the_rule_finds_quotes_in_the_tree():
    """Guard against a rule that silently matches nothing: the tree has such quotes, and they hold."""
    assert sum(len(quotes(p.read_text())) for p in FILES) >= 10


# -- the rule itself, on made-up files ---------------------------------------------------------------------


def test_header_contradicting_a_value_is_found():
    sgd = "# SGD with momentum (He et al. 2015 §3.4: momentum 0.9, weight decay 1e-4).\nmomentum: 0.9\nweight_decay: 5.0e-4\n"
    assert contradictions(sgd) == ["line 1: comment says weight decay 1e-4, the file sets 0.0005"]
    assert contradictions(sgd.replace("1e-4", "5e-4")) == []
    resnet = "# torchvision-style network: shortcut=B stride_in_1x1=false.\nshortcut: B\nstride_in_1x1: true\n"
    assert contradictions(resnet) == ["line 1: comment says stride_in_1x1 false, the file sets True"]


def test_inline_dotted_and_nested_keys():
    text = "data:\n  num_workers: 1  # num_workers=2 feeds it\nschedule:\n  pct_start: 0.2  # schedule.pct_start: 0.25\n"
    assert len(contradictions(text)) == 2


def test_exempt_clauses_code_spans_and_units():
    text = ("lr: 0.2  # the paper's lr 0.1, reduced\n"
            "pad: 2  # pad 4 px is a seventh of the image; `cnnbench train pad=4` restores it\n"
            "weight_decay: 5.0e-4  # cnnbench choice, instead of He et al.'s weight decay 1e-4\n"
            "max_steps: 1000  # e.g. max_steps 64000\n")
    assert contradictions(text) == []
