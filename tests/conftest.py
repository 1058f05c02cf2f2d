"""Shared fixtures."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def load_script():
    """``load_script("benchmarks/x.py")``: a script of the repository (not a package module) loaded as a module,
    for tests of its functions."""
    def load(relpath: str):
        path = ROOT / relpath
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread (torch, and onnxruntime, which follows torch) for a test module of tiny convolutions:
    on a busy 2-core machine two threads wait on each other at every op (measured 73 s vs 6 s for
    tests/test_evaluate.py). Every check compares results of one process, so the thread count changes no result.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")`` (module scope: it is set up before
    the module's other module-scoped fixtures)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
