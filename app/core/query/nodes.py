"""The parsed selector tree: small immutable nodes, one per operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from app.core.query.fields import Field


class Node:
    """Base class of the parsed selector tree (immutable, comparable, hashable)."""


@dataclass(frozen=True)
class MatchAll(Node):
    """The empty selector ``{}``."""


@dataclass(frozen=True)
class MatchNone(Node):
    """A condition nothing satisfies (e.g. ``{"$gt": null}``)."""


@dataclass(frozen=True)
class And(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Nor(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    child: Node


@dataclass(frozen=True)
class Eq(Node):
    """Mongo equality: a literal field value or ``$eq``."""

    field: Field
    value: Any


@dataclass(frozen=True)
class Ne(Node):
    field: Field
    value: Any


@dataclass(frozen=True)
class In(Node):
    field: Field
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Nin(Node):
    field: Field
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Compare(Node):
    """``$gt``/``$gte``/``$lt``/``$lte`` (``op`` is the SQL operator)."""

    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class Exists(Node):
    field: Field
    present: bool


@dataclass(frozen=True)
class Regex(Node):
    """``$regex``; ``flags`` is a sorted subset of ``imsx``."""

    field: Field
    pattern: str
    flags: str


_COMPARE_OPS: Final[dict[str, str]] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
