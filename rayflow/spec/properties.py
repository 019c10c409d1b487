r"""Read Java-style ``.properties`` files (the values of ``--filter``).

Follows ``java.util.Properties.load``: ``key=value``, ``key: value`` or ``key value``; ``#`` and
``!`` start comment lines; a line ending in an odd number of backslashes continues on the next
one; ``\t \n \r \f \uXXXX`` and ``\<char>`` escapes; the last of repeated keys wins. Files are read
as UTF-8.

>>> parse_properties("# kafka\nhost = broker:9092\nport: 9092\nname  word\\\n  count\n")
{'host': 'broker:9092', 'port': '9092', 'name': 'wordcount'}
"""

from __future__ import annotations

import os
import re

from rayflow.errors import TopologyError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BLANK = " \t\f"
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def load_properties(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``key -> value`` pairs of a ``.properties`` file (see the module docstring).

    Raises :class:`TopologyError` when the file cannot be read or holds a bad ``\\u`` escape.
    """
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise TopologyError(f"{file}: cannot read the properties file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TopologyError(f"{file}: the properties file is not UTF-8 text: {exc}") from None
    return parse_properties(text, file)


def parse_properties(text: str, file: str = "<properties>") -> dict[str, str]:
    r"""Parse the text of a ``.properties`` file; ``file`` is named in errors.

    >>> parse_properties("a\\=b=c\\u0041\n! comment\nempty\n")
    {'a=b': 'cA', 'empty': ''}
    """
    lines = _LINE_BREAK.split(text)
    result: dict[str, str] = {}
    index = 0
    while index < len(lines):
        first = index + 1
        line = lines[index].lstrip(_BLANK)
        index += 1
        if not line or line[0] in "#!":
            continue
        while _continues(line):
            line = line[:-1]
            if index < len(lines):
                line += lines[index].lstrip(_BLANK)
                index += 1
        key, value = _split(line)
        where = f"{file}:{first}: "
        result[_unescape(key, where)] = _unescape(value, where)
    return result


def _continues(line: str) -> bool:
    backslashes = len(line) - len(line.rstrip("\\"))
    return backslashes % 2 == 1


def _split(line: str) -> tuple[str, str]:
    """Split a logical line at its first unescaped ``=``, ``:`` or blank."""
    end = 0
    while end < len(line):
        char = line[end]
        if char == "\\":
            end += 2
            continue
        if char in "=:" or char in _BLANK:
            break
        end += 1
    start = end
    while start < len(line) and line[start] in _BLANK:
        start += 1
    if start < len(line) and line[start] in "=:":
        start += 1
    while start < len(line) and line[start] in _BLANK:
        start += 1
    return line[:end], line[start:]


def _unescape(text: str, where: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char != "\\":
            out.append(char)
            continue
        if index == len(text):
            break
        char = text[index]
        index += 1
        if char == "u":
            digits = text[index : index + 4]
            if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise TopologyError(
                    f"{where}malformed \\uXXXX escape '\\u{digits}'; expected 4 hex digits"
                )
            out.append(chr(int(digits, 16)))
            index += 4
        else:
            out.append(_ESCAPES.get(char, char))
    return "".join(out)
