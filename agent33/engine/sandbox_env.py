"""A Jinja sandbox whose compile and evaluation are bounded in time and size.

Jinja folds constant expressions while compiling (`{{ 9**9**9 }}` computes at compile time) and
evaluates `*`, `**`, `range`, filters and loops without any budget, so one expression could hold a
web or Celery worker for minutes and take gigabytes. Here nothing is folded; every value an
expression builds (operators, literals, filters, method calls, `~`, output) is checked against a
size budget before the costly part runs; loops, calls and attribute reads check a wall-clock
deadline. Whatever exceeds a limit raises ExpressionLimitExceeded (an ExpressionError: the step
fails without a retry).
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import update_wrapper, wraps
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer

from agent33.errors import ExpressionError

# One budget for everything an expression builds: a string counts its characters, a container
# one per element plus its elements (shared references count each time, as printing them would),
# an int one per byte of its magnitude.
SIZE_LIMIT = 1_000_000
# Below Python's 4,300-digit limit on int -> str, so every int an expression makes can be printed.
INT_BITS_LIMIT = 14_000
RANGE_LIMIT = 100_000
# Everything one evaluate()/render() call may build in all (what a loop keeps in a buffer counts).
TOTAL_LIMIT = 8 * SIZE_LIMIT
# Wall-clock budget of one evaluate()/render() call.
EVAL_SECONDS = 1.0
_TICK_EVERY = 64


class _Budget:
    """What the current evaluation may still spend: a deadline and the units it has built."""

    __slots__ = ("label", "until", "used")

    def __init__(self, seconds: float, label: str) -> None:
        self.label = label
        self.until = time.monotonic() + seconds
        self.used = 0


_budget: ContextVar[_Budget | None] = ContextVar("agent33_expression_budget", default=None)


class ExpressionLimitExceeded(ExpressionError):
    """An expression went past a size or time limit of the sandbox (never retried)."""

    code = "expression_limit"


def _exceeded(what: str) -> ExpressionLimitExceeded:
    return ExpressionLimitExceeded(f"expression limit exceeded: {what}")


@contextmanager
def deadline(seconds: float = EVAL_SECONDS, label: str = "") -> Iterator[None]:
    """Bound the evaluation inside; nested calls keep the outer budget."""
    if _budget.get() is not None:
        yield
        return
    token = _budget.set(_Budget(seconds, label or f"{seconds:g} s"))
    try:
        yield
    finally:
        _budget.reset(token)


def tick() -> None:
    """Raise once the current evaluation is past its deadline (no-op outside one)."""
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.until:
        raise _exceeded(f"evaluation took longer than {budget.label}")


def _charge(units: int) -> None:
    """Count what was built against the evaluation's total budget."""
    budget = _budget.get()
    if budget is None:
        return
    budget.used += units
    if budget.used > TOTAL_LIMIT:
        raise _exceeded(f"the expression built more than {TOTAL_LIMIT:,} units in all")
    if time.monotonic() > budget.until:
        raise _exceeded(f"evaluation took longer than {budget.label}")


def size_of(value: Any, limit: int = SIZE_LIMIT) -> int:
    """The value's size in budget units; stops counting (cheaply) once past `limit`."""
    total = 0
    pending: list[Iterator[Any]] = [iter((value,))]
    while pending:
        item = next(pending[-1], _END)
        if item is _END:
            pending.pop()
            continue
        total += 1
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, int):
            total += item.bit_length() // 8
        elif isinstance(item, list | tuple | set | frozenset):
            pending.append(iter(item))
        elif isinstance(item, dict):
            pending.append(iter(item.keys()))
            pending.append(iter(item.values()))
        if total > limit:
            break
        if total % 4096 == 0:
            tick()
    return total


_END = object()


def check_size(value: Any, what: str = "value") -> Any:
    """The value, once it is known to be within the size budget (and charged to the total)."""
    size = size_of(value)
    if size > SIZE_LIMIT:
        raise _exceeded(f"{what} is larger than {SIZE_LIMIT:,} units (characters or items)")
    _charge(size)
    return value


def _check_total(total: int, what: str) -> None:
    if total > SIZE_LIMIT:
        raise _exceeded(f"{what} would be larger than {SIZE_LIMIT:,} characters or items")


def _int(value: Any, what: str) -> int:
    number = int(value)
    if number > SIZE_LIMIT:
        raise _exceeded(f"{what} {number} is larger than {SIZE_LIMIT:,}")
    return number


# --- operators -------------------------------------------------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)


def _check_printf(fmt: str | bytes, args: Any) -> None:
    """`fmt % args`: widths and precisions count against the budget, `*` is refused."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    widths = conversions = 0
    for width, precision, kind in _PRINTF.findall(text):
        if kind == "%":
            continue
        if "*" in (width, precision):
            raise _exceeded("'*' widths are not allowed in % formatting")
        widths += int(width or 0) + int(precision or 0)
        conversions += 1
    _check_total(len(text) + widths + conversions * size_of(args), "the formatted string")


def _check_format(fmt: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """`fmt.format(...)`: no nested fields in format specs; widths count against the budget."""
    widths = fields = 0
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        if spec and ("{" in spec or "}" in spec):
            raise _exceeded("nested fields in a format spec are not allowed")
        widths += sum(int(n) for n in re.findall(r"\d+", spec or ""))
        fields += 1
    _check_total(len(fmt) + widths + fields * size_of((args, kwargs)), "the formatted string")


def _sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > INT_BITS_LIMIT:
            raise _exceeded(f"{operator!r} result over {INT_BITS_LIMIT:,} bits")
    elif operator == "*" and ints:
        if left.bit_length() + right.bit_length() > INT_BITS_LIMIT:
            raise _exceeded(f"{operator!r} result over {INT_BITS_LIMIT:,} bits")
    elif operator == "*" and (_sequence(left) or _sequence(right)):
        sequence, count = (left, right) if _sequence(left) else (right, left)
        if isinstance(count, int) and count > 0:
            unit = len(sequence) if isinstance(sequence, str | bytes) else size_of(sequence)
            _check_total(unit * count, "the repeated sequence")
    elif operator == "+" and _sequence(left) and _sequence(right):
        _check_total(size_of(left) + size_of(right), "the concatenation")
    elif operator == "%" and isinstance(left, str | bytes):
        _check_printf(left, right)


# --- filters and methods -----------------------------------------------------------------------


def _replace_size(text: str, old: str, new: str, count: Any = None) -> int:
    hits = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * len(new)


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _join_items(items: Iterable[Any], separator: Any) -> list[Any]:
    listed = []
    total = 0
    for item in items:
        listed.append(item)
        total += size_of(item) + len(str(separator))
        _check_total(total, "the joined string")
        if len(listed) % _TICK_EVERY == 0:
            tick()
    return listed


def _pre_filter(name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Size checks before a filter runs; `args[0]` is the filtered value. May rewrite args."""
    value = args[0] if args else None
    if name == "center":
        _int(_arg(args, kwargs, 1, "width") or 0, "width")
    elif name == "indent":
        width = _arg(args, kwargs, 1, "width")
        unit = (
            len(width) if isinstance(width, str) else _int(4 if width is None else width, "width")
        )
        text = str(value)
        _check_total(len(text) + (text.count("\n") + 2) * unit, "the indented string")
    elif name == "format":
        _check_printf(str(value), kwargs or tuple(args[1:]))
    elif name in ("batch", "slice"):
        _int(_arg(args, kwargs, 1, "linecount" if name == "batch" else "slices") or 0, name)
    elif name == "join":
        args[0] = _join_items(value or (), _arg(args, kwargs, 1, "d") or "")
    elif name == "replace":
        text, old, new = str(value), str(args[1]), str(_arg(args, kwargs, 2, "new"))
        _check_total(_replace_size(text, old, new, _arg(args, kwargs, 3, "count")), "the result")
    elif name == "wordwrap":
        wrap = _arg(args, kwargs, 3, "wrapstring") or "\n"
        text = str(value)
        _check_total(len(text) + (len(text) + 1) * len(str(wrap)), "the wrapped string")
    elif name == "sum":
        start = _arg(args, kwargs, 2, "start")
        if start is not None and not isinstance(start, int | float):
            raise _exceeded("sum() starts from a number only")
    elif name in ("tojson", "pprint", "string", "urlencode", "striptags", "urlize"):
        check_size(value)


# Filters that hand back (part of) their input rather than building a value.
_PASS_THROUGH = frozenset({"attr", "d", "default", "first", "last", "max", "min", "random"})


def _bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    offset = 0 if _PassArg.from_obj(func) is None else 1

    @wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        tick()
        head, rest = list(args[:offset]), list(args[offset:])
        _pre_filter(name, rest, kwargs)
        result = func(*head, *rest, **kwargs)
        return result if name in _PASS_THROUGH else bounded_value(result, f"|{name}")

    return bounded


def _pre_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Size checks before a str/bytes method runs; returns the (possibly listed) args."""
    if name in ("center", "ljust", "rjust", "zfill"):
        _int(_arg(args, kwargs, 0, "width") or 0, "width")
    elif name == "expandtabs":
        size = _int(_arg(args, kwargs, 0, "tabsize") or 8, "tabsize")
        tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
        _check_total(len(owner) + tabs * size, "the expanded string")
    elif name == "replace" and len(args) >= 2:
        _check_total(_replace_size(owner, args[0], args[1], _arg(args, kwargs, 2, "count")), name)
    elif name == "join" and args:
        return (_join_items(args[0], owner), *args[1:])
    elif name in ("translate", "maketrans"):
        raise _exceeded(f"str.{name} is not available in expressions")
    return args


class _BoundedIterator(Iterator[Any]):
    """Wraps a lazy result (a generator filter): items count against the budget as they come."""

    def __init__(self, source: Iterable[Any], what: str, *, count: bool = True) -> None:
        self._source = iter(source)
        self._what = what
        self._count = count
        self._total = 0
        self._seen = 0

    def __iter__(self) -> _BoundedIterator:
        return self

    def __next__(self) -> Any:
        item = next(self._source)
        self._seen += 1
        if self._seen % _TICK_EVERY == 0:
            tick()
        if self._count:
            size = size_of(item) + 1
            self._total += size
            _check_total(self._total, f"the items of {self._what}")
            _charge(size)
        return item


def bounded_value(value: Any, what: str) -> Any:
    """A built value within the budget; a lazy one wrapped so it stays within it."""
    if isinstance(value, Iterator) and not isinstance(value, _BoundedIterator):
        return _BoundedIterator(value, what)
    if isinstance(value, str | bytes):
        if len(value) > SIZE_LIMIT:
            raise _exceeded(f"{what} is longer than {SIZE_LIMIT:,} characters")
        _charge(len(value))
        return value
    return check_size(value, what)


def _bounded_range(*args: int) -> range:
    span = range(*args)
    if len(span) > RANGE_LIMIT:
        raise _exceeded(f"range of {len(span):,} items (at most {RANGE_LIMIT:,})")
    return span


def _bounded_concat(chunks: Iterable[Any]) -> str:
    """`environment.concat`: output, macro and block bodies are joined within the budget."""
    parts = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        _check_total(total, "the rendered text")
        parts.append(chunk)
        if len(parts) % _TICK_EVERY == 0:
            tick()
    return "".join(parts)


def _loop_iter(iterable: Any) -> Any:
    """The iterable of every `{% for %}`: the loop checks the deadline as it goes."""
    if isinstance(iterable, _BoundedIterator):
        return iterable
    return _BoundedIterator(iterable, "the loop", count=False)


def _tilde_concat(parts: list[Any]) -> str:
    """`a ~ b`: the pieces are sized before any is turned into text."""
    total = sum(size_of(part) for part in parts)
    _check_total(total, "the '~' concatenation")
    _charge(total)
    if any(hasattr(part, "__html__") for part in parts):
        return str(markup_join(parts))
    return "".join(str(part) for part in parts)


def _finalize(value: Any) -> Any:
    tick()
    return check_size(value, "an output value")


# --- compilation -------------------------------------------------------------------------------


class _Bounding(NodeTransformer):
    """Routes loops, `~` and literal containers through the sandbox's checks."""

    @staticmethod
    def _filter(node: nodes.Node, name: str) -> nodes.Filter:
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter(node.iter, "_a33_loop")
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        listed = nodes.List(list(node.nodes), lineno=node.lineno)
        return self._filter(listed, "_a33_concat")

    def _sized(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return self._filter(node, "_a33_sized")

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return self._sized(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return self._sized(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            self.generic_visit(node)
            return node
        return self._sized(node)


class _NoFolding(CodeGenerator):
    """Nothing is computed while compiling: output and eval-context values wait for run time."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        if isinstance(node, nodes.TemplateData):
            return super()._output_child_to_const(node, frame, finalize)
        raise nodes.Impossible()

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        for keyword in node.options:
            self.writeline(f"context.eval_ctx.{keyword.key} = ")
            self.visit(keyword.value, frame)
            frame.eval_ctx.volatile = True


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox, data-first attributes, no constant folding, bounded evaluation."""

    code_generator_class = _NoFolding
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    concat = staticmethod(_bounded_concat)

    def __init__(self, **options: Any) -> None:
        super().__init__(optimized=False, finalize=_finalize, **options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(
            _a33_loop=_loop_iter,
            _a33_concat=_tilde_concat,
            _a33_sized=lambda value: check_size(value, "a literal"),
        )
        self.globals.pop("lipsum", None)
        self.globals["range"] = _bounded_range

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        return super()._generate(_Bounding().visit(source), name, filename, defer_init)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`output.items` means the key "items" of a mapping, not the dict method (data first)."""
        tick()
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        _check_binop(operator, left, right)
        result = self.binop_table[operator](left, right)
        if isinstance(result, str | bytes | list | tuple):
            _charge(size_of(result))
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        tick()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str | bytes):
            args = _pre_method(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(owner, Mapping) and name == "get":
            return result
        return bounded_value(result, f"the result of {name or 'a call'}()")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            tick()
            if is_map and len(args) == 1:
                _check_format(fmt, (), args[0])
            else:
                _check_format(fmt, args, kwargs)
            return wrapper(*args, **kwargs)

        return update_wrapper(checked, value)
