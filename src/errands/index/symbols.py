"""Symbols and imports from source files, through tree-sitter.

One query per language finds definitions (``@def.<kind>`` on the node, ``@name`` on its
name) and imports (``@import``); queries run in C, so a file costs one parse and one pass.
Python, the language most indexed, finds the same by walking statements only (see
:func:`_python_defs`): a query visits every node of the tree, most of them expressions.
Methods and nested definitions get their enclosing definition as ``parent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from sys import intern
from typing import NamedTuple

import tree_sitter as ts

from errands.index.model import Symbol

# Extension → language name. Files of other extensions are indexed lexically only.
LANGUAGE_BY_EXT: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
}

_PY = """
(class_definition name: (identifier) @name) @def.class
(function_definition name: (identifier) @name) @def.function
(module (expression_statement (assignment left: (identifier) @name)) @def.variable)
(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (_) @import)
"""

_JS_COMMON = """
(function_declaration name: (identifier) @name) @def.function
(generator_function_declaration name: (identifier) @name) @def.function
(method_definition name: (_) @name) @def.method
(variable_declarator name: (identifier) @name
  value: [(arrow_function) (function_expression)]) @def.function
(import_statement source: (string) @import)
"""

_JS = (
    _JS_COMMON
    + """
(class_declaration name: (identifier) @name) @def.class
"""
)

_TS = (
    _JS_COMMON
    + """
(class_declaration name: (type_identifier) @name) @def.class
(abstract_class_declaration name: (type_identifier) @name) @def.class
(interface_declaration name: (type_identifier) @name) @def.interface
(type_alias_declaration name: (type_identifier) @name) @def.type
(enum_declaration name: (identifier) @name) @def.enum
"""
)

_GO = """
(function_declaration name: (identifier) @name) @def.function
(method_declaration
  receiver: (parameter_list (parameter_declaration
    type: [(type_identifier) @receiver (pointer_type (type_identifier) @receiver)]))
  name: (field_identifier) @name) @def.method
(type_spec name: (type_identifier) @name type: (struct_type)) @def.struct
(type_spec name: (type_identifier) @name type: (interface_type)) @def.interface
(import_spec path: (interpreted_string_literal) @import)
"""

_RUST = """
(function_item name: (identifier) @name) @def.function
(function_signature_item name: (identifier) @name) @def.function
(struct_item name: (type_identifier) @name) @def.struct
(enum_item name: (type_identifier) @name) @def.enum
(trait_item name: (type_identifier) @name) @def.trait
(impl_item type: (_) @name) @def.impl
(mod_item name: (identifier) @name) @def.module
(use_declaration argument: (_) @import)
"""

_JAVA = """
(class_declaration name: (identifier) @name) @def.class
(interface_declaration name: (identifier) @name) @def.interface
(enum_declaration name: (identifier) @name) @def.enum
(record_declaration name: (identifier) @name) @def.record
(method_declaration name: (identifier) @name) @def.method
(constructor_declaration name: (identifier) @name) @def.constructor
(import_declaration (scoped_identifier) @import)
"""


def _load(language: str) -> object:
    if language == "python":
        import tree_sitter_python

        return tree_sitter_python.language()
    if language == "javascript":
        import tree_sitter_javascript

        return tree_sitter_javascript.language()
    if language in ("typescript", "tsx"):
        import tree_sitter_typescript

        if language == "tsx":
            return tree_sitter_typescript.language_tsx()
        return tree_sitter_typescript.language_typescript()
    if language == "go":
        import tree_sitter_go

        return tree_sitter_go.language()
    if language == "rust":
        import tree_sitter_rust

        return tree_sitter_rust.language()
    if language == "java":
        import tree_sitter_java

        return tree_sitter_java.language()
    raise ValueError(f"no grammar for {language}")


_QUERIES: dict[str, str] = {
    "python": _PY,
    "javascript": _JS,
    "typescript": _TS,
    "tsx": _TS,
    "go": _GO,
    "rust": _RUST,
    "java": _JAVA,
}

# Definitions whose children are "methods" of them, and the kinds nested functions take.
_CONTAINERS = frozenset({"class", "interface", "struct", "trait", "impl", "enum", "record"})


@dataclass(frozen=True, slots=True)
class Parsed:
    symbols: tuple[Symbol, ...]
    imports: tuple[str, ...]


class _Def(NamedTuple):
    start: int
    end: int
    kind: str
    name: str
    start_line: int
    end_line: int
    receiver: str | None


@dataclass(slots=True)
class Grammar:
    parser: ts.Parser
    cursor: ts.QueryCursor


@cache
def grammar(language: str) -> Grammar:
    lang = ts.Language(_load(language))
    query = ts.Query(lang, _QUERIES[language])
    return Grammar(parser=ts.Parser(lang), cursor=ts.QueryCursor(query))


def language_of(path: str) -> str | None:
    dot = path.rfind(".")
    if dot < 0 or "/" in path[dot:]:
        return None
    return LANGUAGE_BY_EXT.get(path[dot:].lower())


def _text(node: ts.Node) -> str:
    raw = node.text
    return raw.decode("utf-8", "replace") if raw is not None else ""


def parse(path: str, language: str, source: bytes) -> Parsed:
    """Symbols (with line ranges, 1-based inclusive) and imported module names of one file."""
    loaded = grammar(language)
    root = loaded.parser.parse(source).root_node
    if language == "python":
        defs, imports = _python_defs(root, source)
    else:
        defs, imports = _query_defs(loaded.cursor, root)
    return _assemble(path, defs, imports)


def _query_defs(cursor: ts.QueryCursor, root: ts.Node) -> tuple[list[_Def], list[str]]:
    defs: list[_Def] = []
    imports: list[str] = []
    for _pattern, captures in cursor.matches(root):
        if "import" in captures:
            for node in captures["import"]:
                imports.append(_clean_import(_text(node)))
            continue
        names = captures.get("name")
        if not names:
            continue
        for cap, nodes in captures.items():
            if not cap.startswith("def."):
                continue
            node = nodes[0]
            name = _text(names[0])
            if cap == "def.impl":
                name = _impl_name(name)
            receiver = captures.get("receiver")
            defs.append(
                _Def(
                    start=node.start_byte,
                    end=node.end_byte,
                    kind=cap[4:],
                    name=name,
                    start_line=node.start_point[0] + 1,
                    end_line=node.end_point[0] + 1,
                    receiver=_text(receiver[0]) if receiver else None,
                )
            )
    return defs, imports


# Python nodes that hold statements: where definitions and imports may be.
_PY_DESCEND = frozenset(
    {
        "block",
        "decorated_definition",
        "if_statement",
        "elif_clause",
        "else_clause",
        "for_statement",
        "while_statement",
        "try_statement",
        "except_clause",
        "except_group_clause",
        "finally_clause",
        "with_statement",
        "match_statement",
        "case_clause",
        "ERROR",
    }
)


_PY_DEFS = frozenset({"function_definition", "class_definition"})
# Nodes whose children the walk looks into: definitions and other statement holders.
_PY_HOLDERS = _PY_DESCEND | _PY_DEFS
# Statements the walk visits below the module level: holders and the imports it collects.
_PY_VISIT = _PY_HOLDERS | {"import_statement", "import_from_statement"}
# What a holder must contain to hold anything the walk collects below it (a definition, an
# import) is one of the words `def`, `class`, `import`: a body without any — most functions'
# — is not looked into. The walk tests them with three `find` calls written out (a generator
# or a regex alternation over the body costs more: most bodies have none).


@dataclass(frozen=True, slots=True)
class _PyKinds:
    """The walk's node kinds and fields as the grammar's numbers: comparing ints, not the
    names ``Node.type`` builds a string for at every call."""

    funcs: frozenset[int]
    defs: frozenset[int]
    holders: frozenset[int]
    visit: frozenset[int]
    expression: frozenset[int]
    assignment: frozenset[int]
    identifier: frozenset[int]
    imports: frozenset[int]
    import_from: frozenset[int]
    aliased: frozenset[int]
    dotted: frozenset[int]
    name: int
    left: int
    module_name: int


@cache
def _py_kinds() -> _PyKinds:
    lang = ts.Language(_load("python"))
    by_name: dict[str, set[int]] = {"ERROR": {0xFFFF}}  # tree-sitter's error symbol
    for kind_id in range(lang.node_kind_count):  # a name may have several ids (aliases)
        name = lang.node_kind_for_id(kind_id)
        if name is not None and lang.node_kind_is_named(kind_id):
            by_name.setdefault(name, set()).add(kind_id)

    def ids(*names: str) -> frozenset[int]:
        return frozenset(i for n in names for i in by_name.get(n, ()))

    def field(name: str) -> int:
        fid = lang.field_id_for_name(name)
        assert fid is not None, name
        return fid

    return _PyKinds(
        funcs=ids("function_definition"),
        defs=ids(*_PY_DEFS),
        holders=ids(*_PY_HOLDERS),
        visit=ids(*_PY_VISIT),
        expression=ids("expression_statement"),
        assignment=ids("assignment"),
        identifier=ids("identifier"),
        imports=ids("import_statement"),
        import_from=ids("import_from_statement"),
        aliased=ids("aliased_import"),
        dotted=ids("dotted_name"),
        name=field("name"),
        left=field("left"),
        module_name=field("module_name"),
    )


def _python_defs(root: ts.Node, source: bytes | None = None) -> tuple[list[_Def], list[str]]:
    """What the ``_PY`` query finds, in the same order, visiting only statements (a test
    holds the two to the same answers): definitions and imports cannot hide in expressions,
    which are most of a tree's nodes. Given the ``source``, a holder whose text has none of
    ``def``, ``class`` or ``import`` past its own name is not looked into."""
    k = _py_kinds()
    defs: list[_Def] = []
    imports: list[str] = []
    # Depth-first in document order, with a stack rather than recursion: nesting is unbounded.
    # Below the module level only nodes that may hold something are pushed at all (most
    # statements are expressions, calls and returns).
    stack = [(node, True) for node in reversed(root.named_children)]
    pop = stack.pop
    while stack:
        node, top = pop()
        kind = node.kind_id
        if kind in k.holders:
            lo = node.start_byte
            if kind in k.defs:
                name = node.child_by_field_id(k.name)
                if name is not None:
                    lo = name.end_byte
                    sort = "function" if kind in k.funcs else "class"
                    defs.append(_def(node, sort, _text(name)))
            end = node.end_byte
            if (
                source is not None
                and source.find(b"def", lo, end) < 0
                and source.find(b"class", lo, end) < 0
                and source.find(b"import", lo, end) < 0
            ):
                continue
            inside = [(child, False) for child in node.named_children if child.kind_id in k.visit]
            inside.reverse()
            stack += inside
        elif kind in k.expression:
            if top:  # a module-level `NAME = …`
                for child in node.named_children:
                    left = (
                        child.child_by_field_id(k.left) if child.kind_id in k.assignment else None
                    )
                    if left is not None and left.kind_id in k.identifier:
                        defs.append(_def(node, "variable", _text(left)))
        elif kind in k.imports:
            for child in node.children_by_field_id(k.name):
                name = child.child_by_field_id(k.name) if child.kind_id in k.aliased else child
                if name is not None and name.kind_id in k.dotted:
                    imports.append(_clean_import(_text(name)))
        elif kind in k.import_from:
            module = node.child_by_field_id(k.module_name)
            if module is not None:
                imports.append(_clean_import(_text(module)))
    return defs, imports


def _def(node: ts.Node, kind: str, name: str) -> _Def:
    start_line = node.start_point[0] + 1
    return _Def(node.start_byte, node.end_byte, kind, name, start_line, node.end_point[0] + 1, None)


def _assemble(path: str, defs: list[_Def], imports: list[str]) -> Parsed:
    defs.sort(key=lambda d: (d.start, -d.end))
    symbols: list[Symbol] = []
    stack: list[_Def] = []  # enclosing definitions
    for d in defs:
        while stack and stack[-1].end <= d.start:
            stack.pop()
        parent = stack[-1] if stack else None
        kind = d.kind
        if parent is not None and kind == "function" and parent.kind in _CONTAINERS:
            kind = "method"
        # Names interned (see model._unpickled): symbols parsed in this process share them.
        owner = d.receiver or (parent.name if parent else None)
        symbols.append(
            Symbol(
                name=intern(d.name),
                kind=intern(kind),
                path=path,
                start_line=d.start_line,
                end_line=d.end_line,
                parent=None if owner is None else intern(owner),
            )
        )
        stack.append(d)
    return Parsed(symbols=tuple(symbols), imports=tuple(dict.fromkeys(i for i in imports if i)))


def _impl_name(text: str) -> str:
    # `impl<T> Foo<T>` captures the type `Foo<T>`; keep its bare name.
    return text.split("<", 1)[0].rsplit("::", maxsplit=1)[-1].strip()


def _clean_import(text: str) -> str:
    text = text.strip().strip("\"'`")
    return text
