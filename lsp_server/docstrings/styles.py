"""Docstring styles: detecting Google, NumPy or Sphinx, laying a structure out in one,
and reading any of them back.

A layout is a list of pieces, fixed text and slots, so the same description of a
style serves three purposes: the final rendering, the prompts that ask the model for
one slot at a time (everything before the slot, then the slot's lead-in), and the
skeleton used when the model gives nothing usable.
"""

from __future__ import annotations

import abc
import enum
import re
import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lsp_server.docstrings.structure import Parameter, Structure


class Style(str, enum.Enum):
    GOOGLE = "google"
    NUMPY = "numpy"
    SPHINX = "sphinx"


DEFAULT_STYLE = Style.GOOGLE
# Shown where the model wrote nothing usable: visibly a placeholder, easy to search for.
PLACEHOLDER = "TODO: describe."

_NUMPY_HEADER = re.compile(
    r"^[ \t]*(Parameters|Returns|Yields|Raises|Attributes|Other Parameters|Receives|Warns)"
    r"[ \t]*\r?\n[ \t]*-{3,}[ \t]*$",
    re.MULTILINE,
)
_SPHINX_FIELD = re.compile(
    r"^[ \t]*:(param|parameter|arg|type|returns?|rtype|raises?|except|ivar|vartype|yields?)\b",
    re.MULTILINE,
)
_GOOGLE_HEADER = re.compile(
    r"^([ \t]*)(Args|Arguments|Returns|Return|Yields|Yield|Raises|Attributes|Keyword Args)"
    r":[ \t]*\r?\n\1[ \t]+\S",
    re.MULTILINE,
)


def style_of(docstring: str) -> Style | None:
    """The style one docstring is written in, or None when it shows no sections."""
    if _NUMPY_HEADER.search(docstring):
        return Style.NUMPY
    if _SPHINX_FIELD.search(docstring):
        return Style.SPHINX
    if _GOOGLE_HEADER.search(docstring):
        return Style.GOOGLE
    return None


def detect_style(docstrings: Iterable[str]) -> Style | None:
    """The style most of these docstrings use (ties go to Google, then NumPy)."""
    votes = Counter(s for s in map(style_of, docstrings) if s is not None)
    if not votes:
        return None
    order = list(Style)
    return max(votes, key=lambda s: (votes[s], -order.index(s)))


def resolve_style(
    setting: str | None, file_docstrings: Iterable[str], project_docstrings: Iterable[str] = ()
) -> Style:
    """Configuration wins; then the file's own docstrings; then the project's; else Google."""
    if setting and setting.lower() in {s.value for s in Style}:
        return Style(setting.lower())
    return detect_style(file_docstrings) or detect_style(project_docstrings) or DEFAULT_STYLE


# ---------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Fixed:
    text: str


@dataclass(frozen=True)
class Slot:
    """Where the model writes prose. ``key`` is "summary", "param:NAME", "returns",
    "yields" or "raises:NAME"; ``hanging`` indents continuation lines when wrapped."""

    key: str
    hanging: str = ""


Piece = Fixed | Slot


def _param_type(param: Parameter) -> str | None:
    """Google's and NumPy's type of a parameter: its hint, and "optional" with a default."""
    optional = param.default is not None and param.kind.value not in (
        "var_positional",
        "var_keyword",
    )
    parts = [p for p in (param.annotation, "optional" if optional else None) if p]
    return ", ".join(parts) or None


@dataclass(frozen=True)
class _Item:
    """One entry of a section: ``section`` is "params", "returns", "yields" or "raises"."""

    section: str
    key: str
    param: Parameter | None = None  # for "params"

    @property
    def name(self) -> str:
        """The parameter's or exception's name as written ("" for returns and yields)."""
        if self.param is not None:
            return self.param.display_name
        return self.key.split(":", 1)[1] if self.section == "raises" else ""


def _items(structure: Structure) -> list[_Item]:
    """The entries in document order: parameters, yields, returns, raises."""
    items = [_Item("params", f"param:{p.display_name}", p) for p in structure.params]
    if structure.yields:
        items.append(_Item("yields", "yields"))
    if structure.returns:
        items.append(_Item("returns", "returns"))
    items.extend(_Item("raises", f"raises:{name}") for name in structure.raises)
    return items


def _result_type(item: _Item, structure: Structure) -> str | None:
    return structure.yield_type if item.section == "yields" else structure.return_type


class _Layout(abc.ABC):
    """How one style writes a section's heading and its entries (each style's whole
    layout is its subclass)."""

    titles: Mapping[str, str] = {"returns": "Returns", "yields": "Yields", "raises": "Raises"}
    params_title = ""

    def title(self, section: str, attributes: bool) -> str:
        if section == "params":
            return "Attributes" if attributes else self.params_title
        return self.titles[section]

    @abc.abstractmethod
    def heading(self, section: str, attributes: bool, first: bool) -> list[Piece]:
        """What comes before a section's first entry."""

    @abc.abstractmethod
    def entry(self, item: _Item, structure: Structure, unit: str, attributes: bool) -> list[Piece]:
        """One entry: its lead-in and its slot (and what follows the slot)."""


class _Google(_Layout):
    """``Args:`` / ``Returns:`` headings; ``name (type): prose`` one level in."""

    params_title = "Args"

    def heading(self, section: str, attributes: bool, first: bool) -> list[Piece]:
        return [Fixed(f"\n\n{self.title(section, attributes)}:")]

    def entry(self, item: _Item, structure: Structure, unit: str, attributes: bool) -> list[Piece]:
        if item.param is not None:
            kind = _param_type(item.param)
            lead = f"{item.name} ({kind}): " if kind else f"{item.name}: "
        elif item.section == "raises":
            lead = f"{item.name}: "
        else:
            kind = _result_type(item, structure)
            lead = f"{kind}: " if kind else ""
        return [Fixed(f"\n{unit}{lead}"), Slot(item.key, hanging=unit * 2)]


class _Numpy(_Layout):
    """Underlined headings; ``name : type`` with the prose on the next line, one level in."""

    params_title = "Parameters"

    def heading(self, section: str, attributes: bool, first: bool) -> list[Piece]:
        title = self.title(section, attributes)
        return [Fixed(f"\n\n{title}\n{'-' * len(title)}")]

    def entry(self, item: _Item, structure: Structure, unit: str, attributes: bool) -> list[Piece]:
        if item.param is not None:
            kind = _param_type(item.param)
            lead = f"{item.name} : {kind}" if kind else item.name
        elif item.section == "raises":
            lead = item.name
        else:  # NumPy always names a type; without a hint, all we know is "object".
            lead = _result_type(item, structure) or "object"
        return [Fixed(f"\n{lead}\n{unit}"), Slot(item.key, hanging=unit)]


class _Sphinx(_Layout):
    """reST field lists after one blank line: ``:param name:``, ``:type name:``,
    ``:returns:``, ``:rtype:``, ``:raises Name:``."""

    def heading(self, section: str, attributes: bool, first: bool) -> list[Piece]:
        return [Fixed("\n")] if first else []

    def entry(self, item: _Item, structure: Structure, unit: str, attributes: bool) -> list[Piece]:
        if item.param is not None:
            field_name, type_field = ("ivar", "vartype") if attributes else ("param", "type")
            pieces: list[Piece] = [Fixed(f"\n:{field_name} {item.name}: "), Slot(item.key, hanging=unit)]
            if item.param.annotation:
                pieces.append(Fixed(f"\n:{type_field} {item.name}: {item.param.annotation}"))
            return pieces
        if item.section == "raises":
            return [Fixed(f"\n:raises {item.name}: "), Slot(item.key, hanging=unit)]
        word = "yields" if item.section == "yields" else "returns"
        pieces = [Fixed(f"\n:{word}: "), Slot(item.key, hanging=unit)]
        # reST has no field for the yielded type: :rtype: names the iterator.
        if structure.return_type and (item.section == "yields" or not structure.yields):
            pieces.append(Fixed(f"\n:rtype: {structure.return_type}"))
        return pieces


_LAYOUTS: dict[Style, _Layout] = {Style.GOOGLE: _Google(), Style.NUMPY: _Numpy(), Style.SPHINX: _Sphinx()}


def layout(structure: Structure, style: Style, unit: str = "    ") -> list[Piece]:
    """The docstring's pieces, between the opening and closing quotes.

    Lines after the first carry no base indentation; rendering adds it. ``unit`` is
    one level of indentation inside sections (a tab in tab-indented files).
    """
    pieces: list[Piece] = [Slot("summary")]
    items = _items(structure)
    if not items:
        return pieces
    writer = _LAYOUTS[style]
    attributes = structure.params_section == "attributes"
    current: str | None = None
    for item in items:
        if item.section != current:
            pieces.extend(writer.heading(item.section, attributes, first=current is None))
            current = item.section
        pieces.extend(writer.entry(item, structure, unit, attributes))
    pieces.append(Fixed("\n"))
    return pieces


def slot_keys(pieces: list[Piece]) -> list[str]:
    return [p.key for p in pieces if isinstance(p, Slot)]


# ------------------------------------------------------------------------- rendering


def _visual_width(text: str) -> int:
    return len(text.expandtabs(4))


def _wrap(text: str, first_column: int, hanging: str, base: str, width: int) -> str:
    """Wrap ``text`` whose first line starts at ``first_column``; later lines get
    ``base + hanging``. Newlines in the result are bare ``\\n``."""
    if not text:
        return text
    continuation = base + hanging
    available = max(30, width - _visual_width(continuation))
    first_available = max(30, width - first_column)
    words = text.split()
    lines: list[str] = []
    line = ""
    limit = first_available
    for word in words:
        candidate = f"{line} {word}" if line else word
        if line and len(candidate) > limit:
            lines.append(line)
            line = word
            limit = available
        else:
            line = candidate
    lines.append(line)
    return ("\n" + continuation).join(lines)


@dataclass(frozen=True)
class Quoting:
    quote: str = '"""'
    prefix: str = ""  # "r" for raw docstrings: backslashes are then kept as they are


def escape(text: str, quoting: Quoting) -> str:
    """Make prose safe inside the docstring's quotes."""
    if "r" in quoting.prefix.lower():  # raw strings cannot escape; break the quote run
        return text.replace(quoting.quote, quoting.quote[0] * 2 + " " + quoting.quote[0])
    text = text.replace("\\", "\\\\")
    return text.replace(quoting.quote, "\\" + "\\".join(quoting.quote))


def render_body(
    pieces: list[Piece],
    texts: Mapping[str, str],
    *,
    indent: str = "",
    width: int = 88,
    quoting: Quoting = Quoting(),
    upto: str | None = None,
) -> str:
    """The docstring between the quotes, each line after the first indented by ``indent``.

    With ``upto``, stop just before that slot (the prompt for it); prose is then left
    unwrapped so the model sees it as it wrote it.
    """
    out: list[str] = []
    column = _visual_width(indent) + len(quoting.prefix) + len(quoting.quote)
    for piece in pieces:
        if isinstance(piece, Fixed):
            text = piece.text.replace("\n", "\n" + indent)
        else:
            if piece.key == upto:
                break
            prose = escape(texts.get(piece.key, "") or PLACEHOLDER, quoting)
            text = prose if upto is not None else _wrap(prose, column, piece.hanging, indent, width)
        out.append(text)
        last = text.rsplit("\n", 1)
        column = _visual_width(last[-1]) if len(last) > 1 else column + _visual_width(text)
    body = "".join(out)
    # No trailing whitespace on blank lines.
    return "\n".join(line.rstrip() if not line.strip() else line for line in body.split("\n"))


def render(
    pieces: list[Piece],
    texts: Mapping[str, str],
    *,
    indent: str = "",
    width: int = 88,
    quoting: Quoting = Quoting(),
) -> str:
    """The complete docstring literal, quotes included; lines joined with ``\\n``."""
    body = render_body(pieces, texts, indent=indent, width=width, quoting=quoting)
    if "\n" in body:
        body = body.rstrip(" \t")
        if not body.endswith("\n"):
            body += "\n"
        body += indent
    else:
        body = body.strip()
        if body.endswith(quoting.quote[0]):
            body = body[:-1] + "\\" + body[-1]
    return f"{quoting.prefix}{quoting.quote}{body}{quoting.quote}"


# --------------------------------------------------------------------------- parsing


@dataclass
class ParsedDocstring:
    """What a docstring documents, read leniently from any of the three styles."""

    summary: str = ""
    style: Style | None = None
    params: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # name: (type, text)
    returns: str | None = None  # description, "" when the section is there but empty
    return_type: str | None = None
    yields: str | None = None
    raises: dict[str, str] = field(default_factory=dict)


_GOOGLE_SECTIONS = {
    "args": "params",
    "arguments": "params",
    "parameters": "params",
    "params": "params",
    "attributes": "params",
    "keyword args": "params",
    "keyword arguments": "params",
    "other parameters": "params",
    "returns": "returns",
    "return": "returns",
    "yields": "yields",
    "yield": "yields",
    "raises": "raises",
    "exceptions": "raises",
}
_GOOGLE_ENTRY = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(?:\((?P<type>[^)]*)\))?\s*:\s*(?P<text>.*)$")
_NUMPY_ENTRY = re.compile(r"^(?P<name>\*{0,2}\w+)\s*(?::\s*(?P<type>.*))?$")
_SPHINX_LINE = re.compile(r"^:(?P<field>\w+)(?:\s+(?P<arg>[^:]+?))?\s*:\s*(?P<text>.*)$")


def _strip_quotes(literal: str) -> str:
    match = re.match(r'^[rRuUbBfF]*("""|\'\'\'|"|\')(.*)\1\s*$', literal, re.DOTALL)
    return match.group(2) if match else literal


def _clean_type(type_text: str | None) -> str | None:
    if type_text is None:
        return None
    cleaned = re.sub(r",?\s*optional\s*$", "", type_text.strip()).strip()
    return cleaned or None


def parse_docstring(literal_or_text: str) -> ParsedDocstring:
    """Read a docstring (with or without its quotes) in Google, NumPy or Sphinx style."""
    text = textwrap.dedent(_strip_quotes(literal_or_text).expandtabs(4)).replace("\r\n", "\n")
    lines = text.split("\n")
    # The first line sits right after the quotes and carries no indentation to remove.
    if len(lines) > 1:
        rest = textwrap.dedent("\n".join(lines[1:])).split("\n")
        lines = [lines[0].strip(), *rest]
    result = ParsedDocstring(style=style_of(text))
    summary: list[str] = []
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    while index < len(lines) and lines[index].strip():
        line = lines[index].strip()
        if (
            _SPHINX_LINE.match(line)
            or line.rstrip(":").lower() in _GOOGLE_SECTIONS
            and line.endswith(":")
        ):
            break
        if index + 1 < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[index + 1]):
            break
        summary.append(line)
        index += 1
    result.summary = " ".join(summary)
    _parse_sections(lines[index:], result)
    return result


def _parse_sections(lines: list[str], result: ParsedDocstring) -> None:
    section: str | None = None
    entry: str | None = None  # current entry name inside a section
    section_indent = 0
    entry_indent = 0
    i = 0
    while i < len(lines):
        raw = lines[i]
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        i += 1
        if not line:
            continue
        sphinx = _SPHINX_LINE.match(line)
        if sphinx and indent == 0:
            _sphinx_field(
                sphinx.group("field").lower(),
                sphinx.group("arg"),
                sphinx.group("text").strip(),
                result,
            )
            section, entry = (
                "sphinx",
                sphinx.group("field").lower() + ":" + (sphinx.group("arg") or ""),
            )
            continue
        underline = i < len(lines) and re.fullmatch(r"\s*-{3,}\s*", lines[i])
        if underline and line.lower() in _GOOGLE_SECTIONS:  # NumPy header
            section, entry = "numpy:" + _GOOGLE_SECTIONS[line.lower()], None
            section_indent = indent
            i += 1
            continue
        if line.endswith(":") and line[:-1].strip().lower() in _GOOGLE_SECTIONS:
            section, entry = "google:" + _GOOGLE_SECTIONS[line[:-1].strip().lower()], None
            section_indent = indent
            continue
        if section is None:
            continue
        if section == "sphinx":
            if indent > 0 and entry:
                _append_sphinx(entry, line, result)
            continue
        kind = section.split(":", 1)[1]
        if section.startswith("google:"):
            if indent <= section_indent:
                section = None
                continue
            match = _GOOGLE_ENTRY.match(line)
            if entry is None or (match and indent <= entry_indent):
                entry_indent = indent
                if kind in ("returns", "yields"):
                    type_text, prose = None, line
                    typed = re.match(r"^([\w.\[\], |]+):\s*(.*)$", line)
                    if typed:
                        type_text, prose = typed.group(1), typed.group(2)
                    _set_value(result, kind, type_text, prose)
                    entry = kind
                elif match:
                    entry = match.group("name")
                    _set_entry(result, kind, entry, match.group("type"), match.group("text"))
                continue
            _append(result, kind, entry, line)
        else:  # numpy
            if indent <= section_indent:
                if kind in ("returns", "yields"):
                    type_text = line
                    name_type = re.match(r"^\w+\s*:\s*(.+)$", line)
                    if name_type:
                        type_text = name_type.group(1)
                    _set_value(result, kind, type_text, "")
                    entry = kind
                    continue
                match = _NUMPY_ENTRY.match(line)
                if match:
                    entry = match.group("name")
                    _set_entry(result, kind, entry, match.group("type"), "")
                continue
            _append(result, kind, entry, line)


def _set_entry(
    result: ParsedDocstring, kind: str, name: str, type_text: str | None, text: str
) -> None:
    if kind == "params":
        result.params[name] = (_clean_type(type_text), text.strip())
    elif kind == "raises":
        result.raises[name] = text.strip()


def _set_value(result: ParsedDocstring, kind: str, type_text: str | None, text: str) -> None:
    if kind == "returns":
        result.returns = text.strip()
        result.return_type = _clean_type(type_text)
    else:
        result.yields = text.strip()


def _append(result: ParsedDocstring, kind: str, entry: str | None, line: str) -> None:
    if entry is None:
        return
    if kind == "params" and entry in result.params:
        type_text, text = result.params[entry]
        result.params[entry] = (type_text, f"{text} {line}".strip())
    elif kind == "raises" and entry in result.raises:
        result.raises[entry] = f"{result.raises[entry]} {line}".strip()
    elif kind == "returns" and result.returns is not None:
        result.returns = f"{result.returns} {line}".strip()
    elif kind == "yields" and result.yields is not None:
        result.yields = f"{result.yields} {line}".strip()


def _sphinx_field(name: str, arg: str | None, text: str, result: ParsedDocstring) -> None:
    if name in ("param", "parameter", "arg", "argument", "ivar", "key", "keyword"):
        if arg:
            parts = arg.split()
            pname = parts[-1]
            type_text = " ".join(parts[:-1]) or None
            old_type = result.params.get(pname, (None, ""))[0]
            result.params[pname] = (type_text or old_type, text)
    elif name in ("type", "vartype") and arg:
        pname = arg.strip()
        old_text = result.params.get(pname, (None, ""))[1]
        result.params[pname] = (_clean_type(text), old_text)
    elif name in ("returns", "return"):
        result.returns = text
    elif name == "rtype":
        result.return_type = _clean_type(text)
        if result.returns is None:
            result.returns = ""
    elif name in ("yields", "yield"):
        result.yields = text
    elif name in ("raises", "raise", "except", "exception") and arg:
        result.raises[arg.strip()] = text


def _append_sphinx(entry: str, line: str, result: ParsedDocstring) -> None:
    field_name, _, arg = entry.partition(":")
    if field_name in ("param", "parameter", "arg", "argument", "ivar") and arg:
        pname = arg.split()[-1]
        if pname in result.params:
            type_text, text = result.params[pname]
            result.params[pname] = (type_text, f"{text} {line}".strip())
    elif field_name in ("returns", "return") and result.returns is not None:
        result.returns = f"{result.returns} {line}".strip()
