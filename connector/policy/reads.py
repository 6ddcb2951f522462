"""Whether a Rego library's decision can depend on a dataset's identity.

The catalog asks one decision per offer of every dataset. When the library reads nothing of
the dataset but its classification and owner (its id at most formatted into a reason's text),
offers with the same rules on datasets of the same class and owner get the same allow, so the
catalog may decide once per distinct combination (connector/catalog/visibility.py). The scan
is conservative: any use of `input` it cannot place counts as reading the dataset's identity,
and the catalog then decides per dataset as before.
"""

from __future__ import annotations

import re

_COMMENT = re.compile(r"#[^\n]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|`[^`]*`')
# f(input, "key", ...) or f(input, ["a", "b"], ...) such as object.get, optionally inside
# util.text(...), which only formats the value into a reason's text
_GET = re.compile(
    r"(?P<text>util\.text\(\s*)?[\w.]+\(\s*input\s*,\s*"
    r'(?:"(?P<key>[^"]*)"|\[(?P<path>[^\]]*)\])'
)
_INPUT = re.compile(r"\binput\b")
_SAFE_DATASET = re.compile(r"\.dataset\.(classification|owner)\b")
_OTHER_FIELD = re.compile(r"\.(?!dataset\b)[A-Za-z_]\w*")
_SAFE_FACTS = ("classification", "owner")


def _get_is_safe(match: re.Match[str]) -> bool:
    if match.group("key") is not None:
        return match.group("key") != "dataset"
    parts = [p.strip().strip('"') for p in match.group("path").split(",")]
    if not parts or parts[0] != "dataset":
        return True
    if len(parts) >= 2 and parts[1] in _SAFE_FACTS:
        return True
    return bool(match.group("text")) and parts[1:2] == ["id"]


def reads_dataset_identity(modules: dict[str, str]) -> bool:
    """True unless every read of `input` is provably not the dataset's identity."""
    for text in modules.values():
        code = _COMMENT.sub("", text)
        for match in _GET.finditer(code):
            if not _get_is_safe(match):
                return True
        code = _STRING.sub('""', _GET.sub("", code))
        for match in _INPUT.finditer(code):
            rest = code[match.end() :]
            if not (_SAFE_DATASET.match(rest) or _OTHER_FIELD.match(rest)):
                return True
    return False
