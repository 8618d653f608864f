"""Errors a docstring request can end in, each with a message fit to show the user."""

from __future__ import annotations


class DocstringError(Exception):
    """Bad input for docstring generation; ``str(error)`` is the user-facing message."""


class EmptyFile(DocstringError):
    def __init__(self) -> None:
        super().__init__("The file is empty: there is no function to document.")


class NoDefinition(DocstringError):
    """The position (or name) is not on a function, method or class."""


class SyntaxErrorInCode(DocstringError):
    """The definition to document, or its signature, does not parse."""


class InsertionFailed(DocstringError):
    """The edit would not leave the buffer parseable (a bug, reported instead of applied)."""
