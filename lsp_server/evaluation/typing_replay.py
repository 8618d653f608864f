"""A realistic typing session over a real Python file, as a list of edits (pure).

For each chosen function, the session deletes the body (keeping the ``def`` line and
the docstring, the way a user starts a function) and types it back one character at
a time. A new line arrives as one keystroke with its indentation, as editors
auto-indent.

Debounce: an inline completion is requested where a typist pauses, at word
boundaries: on the fresh empty body, after every new line, and after a keystroke that
ends a word (a character that cannot continue an identifier or number typed right
after one that can, or a closing bracket). Mid-word keystrokes only send
``didChange``, like an editor whose debounce timer is reset by every keystroke.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    """Replace ``text[start:end]`` (code points, current text) with ``new_text``."""

    start: int
    end: int
    new_text: str
    # Ask for an inline completion at the end of the inserted text afterwards.
    request: bool = False
    # "delete" (removing a body), "type" (a keystroke).
    kind: str = "type"
    function: str = ""
    # For the jump pattern, what a request is: "first" (first request of the first visit
    # to a function), "return" (first request on coming back to it), "warm" (the next
    # request in the same place). "" in the typing pattern.
    phase: str = ""
    # The cursor comes here first (the jump pattern's first edit of a visit): the replay
    # asks for code actions at ``start``, as VS Code does at each cursor move, and waits
    # its dwell time before the edit.
    arrive: bool = False


@dataclass(frozen=True)
class FunctionBody:
    name: str
    start: int  # code-point offset of the first statement after the docstring
    end: int  # end of the last statement
    lines: int


def _offsets(text: str) -> list[int]:
    starts, position = [0], 0
    for line in text.splitlines(keepends=True):
        position += len(line)
        starts.append(position)
    return starts


def function_bodies(text: str, *, min_lines: int = 2, max_lines: int = 30) -> list[FunctionBody]:
    """Function (and method) bodies worth retyping, in file order."""
    tree = ast.parse(text)
    starts = _offsets(text)
    lines = text.splitlines()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = list(node.body)
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        if not body:
            continue
        first, last = body[0], body[-1]
        if first.lineno == node.lineno:  # one-line "def f(): return x"
            continue
        end_line = last.end_lineno or last.lineno
        count = end_line - first.lineno + 1
        if not min_lines <= count <= max_lines:
            continue
        # Nested functions would be retyped twice; skip bodies holding other defs.
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for stmt in body for n in ast.walk(stmt)):
            continue
        line_text = lines[first.lineno - 1]
        start = starts[first.lineno - 1] + len(line_text) - len(line_text.lstrip())
        end = starts[end_line - 1] + len(lines[end_line - 1].rstrip())
        found.append(FunctionBody(node.name, start, end, count))
    return sorted(found, key=lambda b: b.start)


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def keystrokes(body: str) -> list[tuple[str, bool]]:
    """The body typed back: ``(inserted text, request afterwards)`` per keystroke."""
    out: list[tuple[str, bool]] = []
    index = 0
    previous = ""
    while index < len(body):
        char = body[index]
        if char == "\n":
            end = index + 1
            while end < len(body) and body[end] in " \t":
                end += 1
            # Blank lines: the newline alone; the indentation comes with the next one.
            if end < len(body) and body[end] == "\n":
                out.append(("\n", False))
                index += 1
                previous = "\n"
                continue
            out.append((body[index:end], True))
            index = end
            previous = "\n"
            continue
        boundary = (_is_word(previous) and not _is_word(char)) or char in ")]}"
        out.append((char, boundary and char not in "\"'"))
        previous = char
        index += 1
    return out


def session(text: str, *, functions: int = 6, min_lines: int = 2, max_lines: int = 30,
            max_keystrokes: int | None = None) -> list[Edit]:
    """Delete and retype up to ``functions`` bodies of ``text``; the text is whole
    again after each function. ``max_keystrokes`` caps the typed keystrokes."""
    bodies = function_bodies(text, min_lines=min_lines, max_lines=max_lines)
    if not bodies:
        raise ValueError("no function bodies to retype in this file")
    chosen = _spread(bodies, functions)
    edits: list[Edit] = []
    typed = 0
    for body in chosen:
        original = text[body.start:body.end]
        edits.append(Edit(body.start, body.end, "", request=True, kind="delete",
                          function=body.name))
        position = body.start
        for piece, request in keystrokes(original):
            if max_keystrokes is not None and typed >= max_keystrokes:
                break
            edits.append(Edit(position, position, piece, request=request, function=body.name))
            position += len(piece)
            typed += 1
        if position - body.start < len(original):
            # Cut short: restore the rest so the file is whole for the next function.
            edits.append(Edit(position, position, original[position - body.start:],
                              kind="restore", function=body.name))
        if max_keystrokes is not None and typed >= max_keystrokes:
            break
    return edits


def _spread(bodies: list[FunctionBody], count: int) -> list[FunctionBody]:
    """``count`` bodies spread evenly over the file (all of them if fewer)."""
    if count >= len(bodies):
        return bodies
    step = len(bodies) / count
    return [bodies[int(i * step)] for i in range(count)]


def apply(text: str, edit: Edit) -> str:
    return text[: edit.start] + edit.new_text + text[edit.end :]


def words(body: str) -> list[list[tuple[str, bool]]]:
    """The body's keystrokes in words: each ends with the keystroke that asks."""
    out: list[list[tuple[str, bool]]] = [[]]
    for piece, request in keystrokes(body):
        out[-1].append((piece, request))
        if request:
            out.append([])
    return [word for word in out if word]


def jump_session(text: str, *, functions: int = 5, visits: int = 4, min_lines: int = 3,
                 max_lines: int = 30) -> list[Edit]:
    """The jump pattern: round-robin among ``functions`` function bodies of ``text``,
    ``visits`` visits each. A function's body is deleted at its first visit (its ``def``
    line and docstring stay) and typed back two words per visit, asking once after
    each word: the first ask of a visit is a "first" or "return" request, the second a
    "warm" one."""
    bodies = _spread(function_bodies(text, min_lines=min_lines, max_lines=max_lines), functions)
    if not bodies:
        raise ValueError("no function bodies to retype in this file")
    # Where each function's body starts in the current text, and where its retyped part
    # ends (each moves with the edits before it); what is left to type.
    starts = [body.start for body in bodies]
    ends = [body.end for body in bodies]
    left = [words(text[body.start:body.end]) for body in bodies]
    started = [False] * len(bodies)
    edits: list[Edit] = []

    def edit(index: int, start: int, end: int, new_text: str, **fields: object) -> None:
        edits.append(Edit(start, end, new_text, function=bodies[index].name, **fields))  # type: ignore[arg-type]
        delta = len(new_text) - (end - start)
        for other in range(len(bodies)):
            if other != index and starts[other] >= end:
                starts[other] += delta
                ends[other] += delta
        ends[index] = start + len(new_text)

    for _ in range(visits):
        for index in range(len(bodies)):
            if len(left[index]) < 2:
                continue
            if not started[index]:
                edit(index, starts[index], ends[index], "", kind="delete", arrive=True)
            for ask in range(2):
                word = left[index].pop(0)
                for number, (piece, _) in enumerate(word):
                    last = number == len(word) - 1
                    phase = ("warm" if ask else "return" if started[index] else "first") if last else ""
                    arrive = started[index] and ask == 0 and number == 0
                    edit(index, ends[index], ends[index], piece, request=last, kind="type",
                         phase=phase, arrive=arrive)
            started[index] = True
    return edits

