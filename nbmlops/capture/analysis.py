"""Static analysis of one cell's (transformed) source: which names it reads, writes and mutates.

Order matters: in ``x = 1; y = x`` the cell reads no ``x`` from earlier cells. Statements are
walked in order; a name counts as *used* when it is loaded before this cell bound it. Function
and lambda parameters, comprehension targets and class-body locals are scoped away. The
analysis never executes anything and never fails: unparsable source yields an empty result.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

__all__ = ["CellNames", "analyze_cell", "FIT_METHODS", "MUTATING_METHODS"]

FIT_METHODS = frozenset({"fit", "fit_transform", "fit_predict", "partial_fit", "fit_resample"})
MUTATING_METHODS = FIT_METHODS | frozenset(
    {
        "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "add",
        "discard", "sort", "reverse", "setdefault", "set_params", "__setitem__", "__delitem__",
    }
)


@dataclass
class CellNames:
    #: names bound by the cell at module level (assignment, import, def, class, for, with...)
    stored: set[str] = field(default_factory=set)
    #: names read that were not bound earlier in the same cell
    used: set[str] = field(default_factory=set)
    #: names changed in place (``df["a"] = ...``, ``x.attr = ...``, ``m.fit(...)``, ``l.append``)
    mutated: set[str] = field(default_factory=set)
    #: names deleted with ``del``
    deleted: set[str] = field(default_factory=set)
    #: ``(estimator variable, [argument names])`` for every ``VAR.fit(...)``-like call
    fits: list[tuple[str, list[str]]] = field(default_factory=list)
    #: ``(target variable, called function name)`` for ``t = f(...)`` at module level
    call_assignments: list[tuple[str, str]] = field(default_factory=list)
    syntax_error: bool = False


def _root_name(node: ast.AST) -> str | None:
    """``df`` for ``df``, ``df.a``, ``df["x"].b``; None for anything else."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _arg_names(call: ast.Call) -> list[str]:
    return [
        n
        for a in [*call.args, *(k.value for k in call.keywords)]
        if (n := _root_name(a)) is not None
    ]


def _func_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


class _Analyzer(ast.NodeVisitor):
    def __init__(self) -> None:
        self.r = CellNames()
        self._local_stack: list[set[str]] = []

    # -- helpers --------------------------------------------------------------------------------

    def _is_local(self, name: str) -> bool:
        return any(name in scope for scope in self._local_stack)

    def _load(self, name: str) -> None:
        if self._is_local(name):
            return
        if name not in self.r.stored:
            self.r.used.add(name)

    def _store(self, name: str) -> None:
        if self._local_stack:
            self._local_stack[-1].add(name)
        else:
            self.r.stored.add(name)
            self.r.deleted.discard(name)

    def _store_target(self, target: ast.AST) -> None:
        """Bind an assignment target: names are stored, attribute/subscript roots mutated."""
        if isinstance(target, ast.Name):
            self._store(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._store_target(elt)
        elif isinstance(target, ast.Starred):
            self._store_target(target.value)
        elif isinstance(target, (ast.Attribute, ast.Subscript)):
            # evaluate the container/index expressions (loads), then mark the root mutated
            self.visit(target.value)
            if isinstance(target, ast.Subscript):
                self.visit(target.slice)
            root = _root_name(target)
            if root and not self._is_local(root):
                self.r.mutated.add(root)

    # -- statements -----------------------------------------------------------------------------

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for t in node.targets:
            self._store_target(t)
        if not self._local_stack and isinstance(node.value, ast.Call):
            call = node.value
            fname = _func_name(call.func)
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if fname:
                self.r.call_assignments.extend((n, fname) for n in names)
            # model = Estimator(...).fit(X, y): the target holds the fitted estimator
            if (
                fname in FIT_METHODS
                and isinstance(call.func, ast.Attribute)
                and not isinstance(call.func.value, ast.Name)
            ):
                args = _arg_names(call)
                self.r.fits.extend((n, args) for n in names)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._store_target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._load(node.target.id)
            self._store(node.target.id)
        else:
            self._store_target(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            # a walrus in a comprehension binds in the enclosing scope
            if self._local_stack:
                self._local_stack[-1].add(node.target.id)
            else:
                self._store(node.target.id)

    def visit_Delete(self, node: ast.Delete) -> None:
        for t in node.targets:
            if isinstance(t, ast.Name):
                if not self._local_stack:
                    self.r.deleted.add(t.id)
                    self.r.stored.discard(t.id)
            else:
                self._store_target(t)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._store(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._store(alias.asname or alias.name)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._store_target(node.target)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For  # type: ignore[assignment]

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self._store_target(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With  # type: ignore[assignment]

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self._store(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        if not isinstance(node, ast.Lambda):
            for deco in node.decorator_list:
                self.visit(deco)
            self._store(node.name)
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
        if args.vararg:
            params.add(args.vararg.arg)
        if args.kwarg:
            params.add(args.kwarg.arg)
        # names assigned anywhere in the body are local to the function
        body = node.body if isinstance(node.body, list) else [node.body]
        local = set(params)
        declared_global: set[str] = set()
        for stmt in body:
            for sub in ast.walk(stmt):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    local.add(sub.id)
                elif isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    local.add(sub.name)
                elif isinstance(sub, (ast.Global, ast.Nonlocal)):
                    declared_global.update(sub.names)
        local -= declared_global
        self._local_stack.append(local)
        try:
            for stmt in body:
                self.visit(stmt)
        finally:
            self._local_stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_function(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self._store(node.name)
        self._local_stack.append(set())
        try:
            for stmt in node.body:
                self.visit(stmt)
        finally:
            self._local_stack.pop()

    def _visit_comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        self._local_stack.append(set())
        try:
            for gen in node.generators:
                self.visit(gen.iter)
                for sub in ast.walk(gen.target):
                    if isinstance(sub, ast.Name):
                        self._local_stack[-1].add(sub.id)
                for cond in gen.ifs:
                    self.visit(cond)
            if isinstance(node, ast.DictComp):
                self.visit(node.key)
                self.visit(node.value)
            else:
                self.visit(node.elt)
        finally:
            self._local_stack.pop()

    visit_ListComp = _visit_comprehension  # type: ignore[assignment]
    visit_SetComp = _visit_comprehension  # type: ignore[assignment]
    visit_GeneratorExp = _visit_comprehension  # type: ignore[assignment]
    visit_DictComp = _visit_comprehension  # type: ignore[assignment]

    # -- expressions ----------------------------------------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self._load(node.id)
        elif isinstance(node.ctx, ast.Store):
            self._store(node.id)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if not isinstance(func, ast.Attribute):
            return
        method = func.attr
        inplace = any(
            k.arg == "inplace" and isinstance(k.value, ast.Constant) and k.value.value is True
            for k in node.keywords
        )
        root = _root_name(func.value)
        if root and not self._is_local(root) and (method in MUTATING_METHODS or inplace):
            self.r.mutated.add(root)
        if method in FIT_METHODS and not self._local_stack:
            if isinstance(func.value, ast.Name):
                self.r.fits.append((func.value.id, _arg_names(node)))


def analyze_cell(source: str) -> CellNames:
    """Analyze a cell's Python source (after IPython's transforms)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return CellNames(syntax_error=True)
    analyzer = _Analyzer()
    try:
        for stmt in tree.body:
            analyzer.visit(stmt)
    except RecursionError:
        return CellNames(syntax_error=True)
    r = analyzer.r
    r.mutated -= r.deleted
    return r
