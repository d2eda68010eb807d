"""Runs every docstring example in `kmm` (those marked `+SKIP` need a trained run, a
server or a video, and are covered by the tests of their functions)."""

import doctest
import importlib
import pkgutil

import pytest

import kmm

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(kmm.__path__, "kmm.")
    if not name.startswith("kmm.demo")  # Streamlit pages: tested through Streamlit's AppTest
)


def _examples(name):
    module = importlib.import_module(name)
    return [test for test in doctest.DocTestFinder().find(module, name) if test.examples]


@pytest.mark.parametrize(
    "name", [name for name in MODULES if ">>>" in open(importlib.util.find_spec(name).origin).read()]
)
def test_docstring_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (see above)"
