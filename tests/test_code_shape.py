"""The shape issue 12 asks of the code: short functions, step functions with few parameters."""

import ast
import inspect
from pathlib import Path

import sid_ray
from sid_ray.sid import step

PACKAGE = Path(sid_ray.__file__).parent
MAX_FUNCTION_LINES = 60
MAX_STEP_PARAMETERS = 6


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_in_sid_ray_is_over_60_lines():
    long = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in functions(path)
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, long


def test_step_functions_take_at_most_6_parameters():
    wide = {
        name: len(inspect.signature(fn).parameters)
        for name, fn in inspect.getmembers(step, inspect.isfunction)
        if fn.__module__ == step.__name__ and len(inspect.signature(fn).parameters) > MAX_STEP_PARAMETERS
    }
    assert not wide, wide
