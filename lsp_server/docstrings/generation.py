"""Prose from the model, one slot at a time, checked against the structure.

The embedded model is a small base model with no instruction tuning, so the prompt is
a code continuation: the function's code first (the model reads it before it writes),
then the same signature again with an opened docstring laid out in the chosen style up
to the slot being filled. Each answer is cut to one line and checked: text that starts
another entry or section, repeats code or names a parameter the function does not have
as its own entry is cut or dropped. What cannot be repaired becomes a placeholder, so
the docstring always has exactly the structure the syntax tree gave.

Slots are generated in document order, each prompt extending the previous one, so the
model's KV cache is reused and only the new tokens are evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lsp_server.backends.base import Cancelled, GenerationRequest, GenerationResult
from lsp_server.docstrings.structure import Structure
from lsp_server.docstrings.styles import (
    PLACEHOLDER,
    Piece,
    Quoting,
    Slot,
    Style,
    render_body,
    slot_keys,
)
from lsp_server.prompts.budget import PromptBudget

Generate = Callable[[GenerationRequest], GenerationResult]
Progress = Callable[[int, int, str], None]

SUMMARY_TOKENS = 40
ENTRY_TOKENS = 36
# The closing quotes end a slot; so does the end of its first line of text (see one_line).
_STOPS = ('"""', "'''")


def one_line(text: str) -> int | None:
    """Stop rule: cut at the end of the first non-blank line. One newline may come first
    (``\"\"\"\n    Summary`` and NumPy's description lines); two mean nothing came."""
    content = len(text) - len(text.lstrip())
    if text.count("\n", 0, content) >= 2:
        return 0
    end = text.find("\n", content)
    return end if end != -1 and content < len(text) else None


_SECTION_WORDS = re.compile(
    r"\b(Args|Arguments|Parameters|Returns?|Yields?|Raises|Attributes|Examples?|Note)\s*:",
)
_STATEMENT = re.compile(r"^(def |class |async def |import |from \w[\w.]* import |>>>|@\w)")
_CODE_LIKE = re.compile(
    r"^\s*(def |class |import |from \w[\w.]* import |>>>|@\w)"  # statements
    r"|^\s*\w[\w.\[\]]*\s*[-+*/]?=[^=]"  # assignments
    r"|==|!=|->|[{};:]\s*$"  # operators, headers and braces that prose does not end with
)
_ENTRY = re.compile(r"(^|\s)\**[A-Za-z_]\w*\s*\([^)]*\)\s*:|^\**[a-z_]\w*\s*:(\s|$)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass
class DocstringDraft:
    """The prose for each slot and how each was obtained."""

    texts: dict[str, str] = field(default_factory=dict)
    # slot key -> "model", "repaired", "fallback" or "placeholder"
    origin: dict[str, str] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0

    @property
    def model_slots(self) -> int:
        return sum(1 for o in self.origin.values() if o in ("model", "repaired"))


def code_context(function_code: str) -> str:
    """The function's code as the model should read it: dedented (the caller has taken
    its old docstring out); :func:`fit_code` cuts it to the model's budget."""
    lines = function_code.replace("\r\n", "\n").split("\n")
    margin = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[margin:] for line in lines).rstrip()


def fit_code(
    code: str,
    signature: str,
    pieces: list[Piece],
    budget: PromptBudget,
    *,
    indent: str = "    ",
    quote: str = '"""',
    max_tokens: int = ENTRY_TOKENS,
) -> str:
    """``code`` cut to what the model's context holds beside the rest of the largest slot
    prompt: the signature, the whole docstring laid out (placeholders for the prose) and,
    as the tokens to generate, what every slot may write. The code keeps its top (the
    definition's signature and first lines); lines go from its end."""
    frame = prompt_for("", signature, pieces, {}, "", indent=indent, quote=quote)
    keys = slot_keys(pieces)
    written = sum(SUMMARY_TOKENS if key == "summary" else max_tokens for key in keys)
    return budget.keep_start(code, budget.room(max(written, SUMMARY_TOKENS), beside=frame))


def prompt_for(
    code: str,
    signature: str,
    pieces: list[Piece],
    texts: dict[str, str],
    slot: str,
    *,
    indent: str,
    quote: str = '"""',
) -> str:
    """Code, blank lines, the signature again, the docstring so far up to ``slot``."""
    so_far = render_body(pieces, texts, indent=indent, quoting=Quoting(quote), upto=slot)
    # Trailing blanks would split the tokens the model expects ("): List" not "): " "List").
    return f"{code}\n\n\n{signature}\n{indent}{quote}{so_far}".rstrip(" \t")


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def clean_slot(raw: str, key: str, known_names: set[str], function_name: str) -> str | None:
    """One line of the model's prose made fit for ``key``, or None if unusable."""
    text = raw.replace("\r", "").strip().split("\n", 1)[0]
    for quote in ('"""', "'''"):
        text = text.split(quote, 1)[0]
    text = text.strip().strip("`").strip()
    if _STATEMENT.search(text):
        return None
    # Another section or entry started on the same line: keep what came before it.
    section = _SECTION_WORDS.search(text)
    if section:
        text = text[: section.start()].strip()
    for name in known_names:
        bare = re.escape(name.lstrip("*"))
        for pattern in (
            rf"(^|\s)\*{{0,2}}{bare}\s*\([^)]*\)\s*:",  # Google entry
            rf"^\*{{0,2}}{bare}\s*:",  # untyped Google entry or NumPy "name : type"
            rf"(^|\s):param\s+\*{{0,2}}{bare}\b",  # Sphinx field
        ):
            other = re.search(pattern, text)
            if other:
                text = text[: other.start()].strip()
    if key.startswith("param:"):
        own = re.escape(key.split(":", 1)[1].lstrip("*"))
        text = re.sub(rf"^\**{own}\s*(\([^)]*\))?\s*[:\-]\s*", "", text)
    # Any other "name (type):" or "name:" entry, made up or not, starts a new entry.
    entry = _ENTRY.search(text)
    if entry:
        text = text[: entry.start()].strip()
    text = re.sub(r"^(:\w+[^:]*:)\s*", "", text)  # a stray field marker
    if _CODE_LIKE.search(text):
        return None
    text = text.strip(" -:,;")
    if not re.search(r"[A-Za-z]{2,}", text):
        return None
    words = re.findall(r"\w+", text)
    if len(words) > 3 and len(set(words)) <= len(words) // 3:  # a repetition loop
        return None
    if key == "summary":
        sentences = _SENTENCE_END.split(text)
        text = imperative(sentences[0])
        if text.lower().rstrip(".") in {
            function_name.lower(),
            function_name.replace("_", " ").lower(),
        }:
            return None
    if len(text) > 300:
        text = text[:300].rsplit(" ", 1)[0]
    if text.count("(") != text.count(")") or text.count("[") != text.count("]"):
        return None
    text = _capitalize(text)
    if not text.endswith((".", "!", "?")):
        text += "."
    return text


_THIS_FUNCTION = re.compile(
    r"^(?:this|the)\s+(?:function|method)\s+(?:will\s+(?P<base>\w+)|(?P<third>\w+s))\b",
    re.IGNORECASE,
)


def imperative(summary: str) -> str:
    """PEP 257's mood: "This function returns X" -> "Return X"."""
    match = _THIS_FUNCTION.match(summary)
    if match is None:
        return summary
    verb = match.group("base")
    if verb is None:
        third = match.group("third")
        if third.lower() in ("is", "was", "has", "does"):  # a description, not an action
            return summary
        if third.endswith("ies"):
            verb = third[:-3] + "y"
        elif third.endswith(("sses", "shes", "ches", "xes", "zes")):
            verb = third[:-2]
        else:
            verb = third[:-1]
    return verb.capitalize() + summary[match.end() :]


def fallback_summary(structure: Structure) -> str:
    """A summary read off the name, for when the model gave none."""
    if not structure.name:
        return PLACEHOLDER
    return _capitalize(" ".join(name_words(structure.name))) + "."


def generate_prose(
    structure: Structure,
    pieces: list[Piece],
    code: str,
    signature: str,
    generate: Generate,
    *,
    indent: str = "    ",
    quote: str = '"""',
    previous_summary: str | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    max_tokens: int = ENTRY_TOKENS,
) -> DocstringDraft:
    """Ask the model for every slot in order; each answer is checked and repaired.

    ``generate`` is the model (``ModelWorker.generate_blocking`` or a stand-in); it may
    raise ``Cancelled``, which propagates. ``cancelled`` is checked between slots.
    """
    draft = DocstringDraft()
    keys = slot_keys(pieces)
    known = {p.name for p in structure.params} | {p.display_name for p in structure.params}
    defaults = {f"param:{p.display_name}": p.default for p in structure.params}

    def ask(key: str, lead: str = "") -> tuple[str, str | None]:
        prompt = prompt_for(code, signature, pieces, draft.texts, key, indent=indent, quote=quote)
        result = generate(
            GenerationRequest(
                prompt=prompt + lead,
                max_tokens=SUMMARY_TOKENS if key == "summary" else max_tokens,
                temperature=0.0,
                stop=_STOPS,
                stop_rule=one_line,
            )
        )
        draft.tokens += result.token_count
        draft.seconds += result.total_s
        text = lead + result.text
        cleaned = clean_slot(text, key, known - {key.split(":", 1)[-1]}, structure.name)
        if cleaned is not None and key in defaults:
            cleaned = fix_default(cleaned, defaults[key])
        return text, cleaned

    for number, key in enumerate(keys):
        if cancelled():
            raise Cancelled("docstring generation cancelled")
        if progress is not None:
            progress(number, len(keys), _describe(key))
        raw, cleaned = ask(key)
        draft.raw[key] = raw
        origin = "model"
        if cleaned is None and key == "summary" and structure.kind != "class":
            # A second try that starts the sentence with the name's verb ("Split ...").
            raw, cleaned = ask(key, lead=name_words(structure.name)[0].capitalize())
            if cleaned is not None and len(cleaned.split()) < 2:  # the lead alone, or glued on
                cleaned = None
            draft.raw[key] += " | retry: " + raw
            origin = "repaired"
        if cleaned is not None:
            as_written = raw.strip().split("\n", 1)[0].rstrip(".").lower()
            if cleaned.rstrip(".").lower() != as_written:
                origin = "repaired"
            draft.texts[key] = cleaned
            draft.origin[key] = origin
        elif key == "summary":
            draft.texts[key] = previous_summary or fallback_summary(structure)
            draft.origin[key] = "fallback"
        else:
            draft.texts[key] = PLACEHOLDER
            draft.origin[key] = "placeholder"
    if progress is not None:
        progress(len(keys), len(keys), "done")
    return draft


# "Defaults to X." as its own sentence, clause or parenthesis at the end of the text.
_DEFAULTS_SENTENCE = re.compile(
    r"(?:^|(?<=[.;,])\s+|\s*\()(?:defaults?|by default)\b\s*(?:to\b|is\b|=|:)?\s*"
    r"(?P<value>[^()]*?)\)?\.?$",
    re.IGNORECASE,
)


def _sentence(head: str) -> str:
    head = head.rstrip().rstrip(",;")
    return head if not head or head.endswith((".", "!", "?")) else head + "."


def fix_default(text: str, default: str | None) -> str | None:
    """A "Defaults to X." the model wrote must name the real default, or go."""
    match = _DEFAULTS_SENTENCE.search(text)
    if match is None:
        return text
    stated = match.group("value").strip().rstrip(".").strip("`'\"")
    head = _sentence(text[: match.start()])
    if default is None:
        return head or None
    if stated == default.strip("'\""):
        return text
    return f"{head} Defaults to {default}.".strip()


def name_words(name: str) -> list[str]:
    """``split_words`` and ``splitWords`` -> ["split", "words"]."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").split()
    return [w.lower() if not w.isupper() else w for w in words] or [name]


def _describe(key: str) -> str:
    kind, _, name = key.partition(":")
    return {
        "summary": "summary",
        "param": f"parameter {name}",
        "returns": "return value",
        "yields": "yielded values",
        "raises": f"when it raises {name}",
    }.get(kind, key)


def skeleton(
    structure: Structure, pieces: list[Piece], summary: str | None = None
) -> dict[str, str]:
    """Texts for a docstring with no model output: a summary if one is known, placeholders."""
    texts = {key: PLACEHOLDER for key in slot_keys(pieces)}
    texts["summary"] = summary or fallback_summary(structure)
    return texts


__all__ = [
    "DocstringDraft",
    "Generate",
    "Slot",
    "Style",
    "clean_slot",
    "code_context",
    "fallback_summary",
    "fit_code",
    "generate_prose",
    "prompt_for",
    "skeleton",
]
