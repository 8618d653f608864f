"""What a docstring must contain, read from the syntax tree rather than from the model.

One entry per parameter (name, type hint, default), Returns only where the function
returns a value, Yields only where it yields, Raises for each explicit ``raise``.
Nested functions, classes and lambdas are not part of the enclosing function's body
for these questions.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

from lsp_server.docstrings.errors import EmptyFile, NoDefinition, SyntaxErrorInCode
from lsp_server.parsing import syntax
from lsp_server.parsing.region import SyntaxTree


class ParamKind(enum.Enum):
    POSITIONAL_ONLY = "positional_only"
    POSITIONAL_OR_KEYWORD = "positional_or_keyword"
    VAR_POSITIONAL = "var_positional"
    KEYWORD_ONLY = "keyword_only"
    VAR_KEYWORD = "var_keyword"


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: ParamKind = ParamKind.POSITIONAL_OR_KEYWORD
    annotation: str | None = None
    default: str | None = None

    @property
    def display_name(self) -> str:
        """The name as docstrings write it: ``*args`` and ``**kwargs`` keep their stars."""
        if self.kind is ParamKind.VAR_POSITIONAL:
            return f"*{self.name}"
        if self.kind is ParamKind.VAR_KEYWORD:
            return f"**{self.name}"
        return self.name


@dataclass(frozen=True)
class Structure:
    """The skeleton of one definition's docstring."""

    kind: str  # "function", "method" or "class"
    name: str
    params: tuple[Parameter, ...] = ()
    # "args" for callables and classes documented by __init__, "attributes" for dataclasses.
    params_section: str = "args"
    returns: bool = False
    return_type: str | None = None
    yields: bool = False
    yield_type: str | None = None
    raises: tuple[str, ...] = ()
    is_async: bool = False


@dataclass(frozen=True)
class Definition:
    """A function or class node found in a tree, with what insertion needs to know."""

    node: Node  # function_definition or class_definition
    structure: Structure
    existing_docstring: Node | None = None  # the ``string`` node of the current docstring
    # Byte range of the header: from the first decorator to the signature's colon.
    header_start: int = 0
    header_end: int = 0
    decorators: tuple[str, ...] = field(default=())


_NESTED_SCOPES = frozenset({"function_definition", "class_definition", "lambda"})
_NONE_TYPES = frozenset({"None", "NoReturn", "Never", "typing.NoReturn", "typing.Never"})
_STUB_STATEMENTS = frozenset({"pass_statement"})
_ITERATOR_TYPE = re.compile(
    r"^(?:[\w.]+\.)?(?:Async)?(?:Iterator|Iterable|Generator)\[\s*(?P<item>.+?)\s*(?:,.*)?\]$"
)


def _text(node: Node | None, source: bytes) -> str:
    return "" if node is None else syntax.node_text(node, source)


def _walk_own_body(node: Node) -> Iterator[Node]:
    """Every node under ``node`` except inside nested functions, classes and lambdas."""
    stack = list(reversed(node.children))
    while stack:
        current = stack.pop()
        yield current
        if current.type in _NESTED_SCOPES:
            continue
        stack.extend(reversed(current.children))


def _single_line(text: str) -> str:
    return " ".join(text.split())


def parameters(params_node: Node | None, source: bytes) -> list[Parameter]:
    """Parameters in order, with their kinds; ``*`` and ``/`` separators set the kinds."""
    if params_node is None:
        return []
    found: list[Parameter] = []
    keyword_only = False
    for child in params_node.named_children:
        kind = ParamKind.KEYWORD_ONLY if keyword_only else ParamKind.POSITIONAL_OR_KEYWORD
        annotation: str | None = None
        default: str | None = None
        target = child
        if child.type == "positional_separator":
            found = [
                Parameter(p.name, ParamKind.POSITIONAL_ONLY, p.annotation, p.default)
                if p.kind is ParamKind.POSITIONAL_OR_KEYWORD
                else p
                for p in found
            ]
            continue
        if child.type == "keyword_separator":
            keyword_only = True
            continue
        if child.type in ("typed_parameter", "typed_default_parameter", "default_parameter"):
            type_node = child.child_by_field_name("type")
            value_node = child.child_by_field_name("value")
            annotation = _single_line(_text(type_node, source)) if type_node else None
            default = _single_line(_text(value_node, source)) if value_node else None
            name_node = child.child_by_field_name("name")
            if name_node is None:  # typed_parameter: the first named child is the name/splat
                name_node = next((c for c in child.named_children if c.type != "type"), None)
            if name_node is None:
                continue
            target = name_node
        if target.type == "list_splat_pattern":
            kind = ParamKind.VAR_POSITIONAL
            keyword_only = True
            name = _text(target, source).lstrip("*").strip()
        elif target.type == "dictionary_splat_pattern":
            kind = ParamKind.VAR_KEYWORD
            name = _text(target, source).lstrip("*").strip()
        elif target.type == "identifier":
            name = _text(target, source)
        else:
            continue
        if name:
            found.append(Parameter(name, kind, annotation, default))
    return found


def _decorator_names(definition: Node, source: bytes) -> tuple[str, ...]:
    parent = definition.parent
    if parent is None or parent.type != "decorated_definition":
        return ()
    names = []
    for child in parent.children:
        if child.type == "decorator":
            text = _text(child, source).lstrip("@").strip()
            names.append(text.split("(", 1)[0].strip())
    return tuple(names)


def _enclosing_class(definition: Node) -> Node | None:
    """The class whose body directly holds this definition (possibly decorated)."""
    node = syntax.definition_node(definition)
    block = node.parent
    if block is not None and block.type == "block":
        owner = block.parent
        if owner is not None and owner.type == "class_definition":
            return owner
    return None


def docstring_node(definition: Node) -> Node | None:
    """The ``string`` node that is this definition's docstring, if it has one."""
    body = definition.child_by_field_name("body")
    if body is None:
        return None
    for child in body.named_children:
        if child.type == "comment":
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            value = child.named_children[0]
            if value.type == "string":
                return value
        return None
    return None


def _is_stub(body: Node, docstring: Node | None) -> bool:
    """A body of only ``pass``, ``...``, a docstring or ``raise NotImplementedError``."""
    for child in body.named_children:
        if child.type == "comment" or child.type in _STUB_STATEMENTS:
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            value = child.named_children[0]
            if value.type == "ellipsis" or (docstring is not None and value == docstring):
                continue
        if child.type == "raise_statement" and "NotImplementedError" in (child.text or b"").decode(
            "utf-8", "replace"
        ):
            continue
        return False
    return True


def _raised_name(statement: Node, source: bytes) -> str | None:
    exception = next((c for c in statement.named_children), None)
    if exception is None:  # bare ``raise`` re-raises; nothing new to document
        return None
    if exception.type == "call":
        exception = exception.child_by_field_name("function") or exception
    if exception.type not in ("identifier", "attribute"):
        return None
    return _text(exception, source)


def _yield_item_type(annotation: str | None) -> str | None:
    if not annotation:
        return None
    match = _ITERATOR_TYPE.match(annotation)
    return match.group("item") if match else None


def function_structure(node: Node, source: bytes) -> Structure:
    """The docstring skeleton of a ``function_definition`` node."""
    params = parameters(node.child_by_field_name("parameters"), source)
    decorators = _decorator_names(node, source)
    owner = _enclosing_class(node)
    kind = "function"
    if owner is not None:
        kind = "method"
        static = any(d.rsplit(".", 1)[-1] == "staticmethod" for d in decorators)
        if (
            not static
            and params
            and params[0].kind
            in (
                ParamKind.POSITIONAL_ONLY,
                ParamKind.POSITIONAL_OR_KEYWORD,
            )
        ):
            params = params[1:]
    return_node = node.child_by_field_name("return_type")
    annotation = _single_line(_text(return_node, source)) if return_node else None
    body = node.child_by_field_name("body")
    returns_value = False
    yields = False
    raises: list[str] = []
    if body is not None:
        for child in _walk_own_body(body):
            if child.type == "return_statement":
                value = next(iter(child.named_children), None)
                if value is not None and value.type != "none":
                    returns_value = True
            elif child.type == "yield":
                yields = True
            elif child.type == "raise_statement":
                name = _raised_name(child, source)
                if name and name not in raises:
                    raises.append(name)
    if annotation in _NONE_TYPES:
        returns_value = False
    elif (
        not returns_value
        and not yields
        and annotation
        and body is not None
        and _is_stub(body, docstring_node(node))
    ):
        returns_value = True  # abstract methods and protocols promise what they return
    is_async = any(c.type == "async" for c in node.children)
    return Structure(
        kind=kind,
        name=_text(node.child_by_field_name("name"), source),
        params=tuple(params),
        returns=returns_value,
        return_type=annotation,
        yields=yields,
        yield_type=_yield_item_type(annotation) if yields else None,
        raises=tuple(raises),
        is_async=is_async,
    )


_DATACLASS_DECORATORS = frozenset(
    {
        "dataclass",
        "dataclasses.dataclass",
        "define",
        "attrs.define",
        "attr.s",
        "frozen",
        "attrs.frozen",
        "attr.attrs",
        "mutable",
        "attrs.mutable",
    }
)


def _class_fields(body: Node, source: bytes) -> list[Parameter]:
    """Annotated class-level names (dataclass fields), ClassVars left out."""
    found = []
    for statement in body.named_children:
        if statement.type != "expression_statement" or statement.named_child_count != 1:
            continue
        assignment = statement.named_children[0]
        if assignment.type != "assignment":
            continue
        left = assignment.child_by_field_name("left")
        type_node = assignment.child_by_field_name("type")
        if left is None or type_node is None or left.type != "identifier":
            continue
        annotation = _single_line(_text(type_node, source))
        if "ClassVar" in annotation:
            continue
        value = assignment.child_by_field_name("right")
        default = _single_line(_text(value, source)) if value is not None else None
        found.append(Parameter(_text(left, source), annotation=annotation, default=default))
    return found


def class_structure(node: Node, source: bytes) -> Structure:
    """A class documents its constructor's parameters, or a dataclass its fields."""
    name = _text(node.child_by_field_name("name"), source)
    body = node.child_by_field_name("body")
    decorators = _decorator_names(node, source)
    if body is not None and any(d in _DATACLASS_DECORATORS for d in decorators):
        return Structure("class", name, tuple(_class_fields(body, source)), "attributes")
    if body is not None:
        for statement in body.named_children:
            function = statement
            if statement.type == "decorated_definition":
                function = statement.child_by_field_name("definition") or statement
            if function.type != "function_definition":
                continue
            if _text(function.child_by_field_name("name"), source) == "__init__":
                init = function_structure(function, source)
                return Structure("class", name, init.params, "args", raises=init.raises)
    return Structure("class", name)


def describe(node: Node, source: bytes) -> Definition:
    structure = (
        class_structure(node, source)
        if node.type == "class_definition"
        else function_structure(node, source)
    )
    outer = syntax.definition_node(node)
    colon = next((c for c in node.children if c.type == ":"), None)
    header_end = colon.end_byte if colon is not None else node.end_byte
    return Definition(
        node=node,
        structure=structure,
        existing_docstring=docstring_node(node),
        header_start=outer.start_byte,
        header_end=header_end,
        decorators=_decorator_names(node, source),
    )


def _first_error_line(node: Node) -> int | None:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_error or current.is_missing:
            return current.start_point[0]
        if current.has_error:
            stack.extend(reversed(current.children))
    return None


def _check_parses(node: Node) -> None:
    if not node.has_error:
        return
    line = _first_error_line(node)
    where = f" at line {line + 1}" if line is not None else ""
    raise SyntaxErrorInCode(
        f"'{_name_of(node)}' has a syntax error{where}; fix it before generating a docstring."
    )


def _name_of(node: Node) -> str:
    name = node.child_by_field_name("name")
    return (name.text or b"?").decode("utf-8", "replace") if name is not None else "?"


def qualified_path(node: Node) -> list[str]:
    """The names of ``node`` and the functions and classes around it, outermost first."""
    path = [_name_of(node)]
    parent = node.parent
    while parent is not None:
        if parent.type in ("function_definition", "class_definition"):
            path.insert(0, _name_of(parent))
        parent = parent.parent
    return path


def qualified_name(node: Node) -> str:
    """``Outer.inner``: how :func:`definition_named` finds ``node`` again (in a newer text)."""
    return ".".join(qualified_path(node))


def definitions(tree: Tree) -> Iterator[Node]:
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type in ("function_definition", "class_definition"):
            yield node
        stack.extend(reversed(node.children))


def definitions_around(tree: SyntaxTree, byte_offset: int) -> Iterator[Node]:
    """The definitions whose text (decorators included) holds ``byte_offset``, outermost
    first: the walk enters only nodes around it, so a code action asked at every cursor
    move does not visit a large file's every node."""
    stack = [child for child in reversed(tree.root_node.children)
             if child.start_byte <= byte_offset <= child.end_byte]
    while stack:
        node = stack.pop()
        if node.type in ("function_definition", "class_definition"):
            yield node
        for child in reversed(node.children):
            if child.start_byte <= byte_offset <= child.end_byte or (
                node.type == "decorated_definition" and child.type in ("function_definition", "class_definition")
            ):
                stack.append(child)


def _check_not_empty(source: bytes) -> None:
    if not source.strip():
        raise EmptyFile()


def _hidden_by_errors(tree: SyntaxTree) -> str:
    line = min((found for child in tree.root_node.children
                if (found := _first_error_line(child)) is not None), default=None)
    if line is None:
        return ""
    return f" (the file has a syntax error at line {line + 1}, which may hide it)"


def definition_at(
    tree: SyntaxTree, source: bytes, byte_offset: int, *, header_only: bool = False
) -> Definition:
    """The innermost function or class around ``byte_offset``.

    With ``header_only``, only a position on the decorators, the signature or the
    existing docstring counts (what code actions offer on); otherwise anywhere inside
    the definition does (the command and the CLI).
    """
    _check_not_empty(source)
    best: Node | None = None
    for node in definitions_around(tree, byte_offset):
        outer = syntax.definition_node(node)
        if not outer.start_byte <= byte_offset <= outer.end_byte:
            continue
        if header_only:
            colon = next((c for c in node.children if c.type == ":"), None)
            end = colon.end_byte if colon is not None else node.end_byte
            existing = docstring_node(node)
            on_header = byte_offset <= end
            on_docstring = existing is not None and (
                existing.start_byte <= byte_offset <= existing.end_byte
            )
            if not (on_header or on_docstring):
                continue
        if best is None or outer.start_byte >= syntax.definition_node(best).start_byte:
            best = node
    if best is None:
        raise NoDefinition(
            "The cursor is not on a function, method or class" + _hidden_by_errors(tree) + "."
        )
    _check_parses(syntax.definition_node(best))
    return describe(best, source)


def definition_named(tree: Tree, source: bytes, name: str) -> Definition:
    """A definition by name: ``func``, ``Class`` or ``Class.method`` (dots for nesting)."""
    _check_not_empty(source)
    wanted = name.split(".")
    for node in definitions(tree):
        path = qualified_path(node)
        if path[-len(wanted) :] == wanted:
            _check_parses(syntax.definition_node(node))
            return describe(node, source)
    raise NoDefinition(
        f"No function, method or class named '{name}'" + _hidden_by_errors(tree) + "."
    )


def all_docstrings(tree: Tree, source: bytes) -> Iterator[str]:
    """Raw text (quotes included) of every docstring in the tree, module docstring too."""
    root = tree.root_node
    first = next((c for c in root.named_children if c.type != "comment"), None)
    if (
        first is not None
        and first.type == "expression_statement"
        and first.named_child_count == 1
        and first.named_children[0].type == "string"
    ):
        yield syntax.node_text(first.named_children[0], source)
    for node in definitions(tree):
        found = docstring_node(node)
        if found is not None:
            yield syntax.node_text(found, source)
