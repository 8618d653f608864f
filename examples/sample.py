"""A small module to try Ghostpilot on: `make demo` completes the body of `mean`."""

import math
from dataclasses import dataclass


@dataclass
class Point:
    x: float
    y: float


def distance(a: Point, b: Point) -> float:
    """Euclidean distance between two points."""
    return math.hypot(a.x - b.x, a.y - b.y)


def mean(values: list[float]) -> float:
    """Arithmetic mean of a non-empty list of numbers."""
    
