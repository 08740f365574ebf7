"""Shared pytest setup: deterministic, single-process torch so tests are reproducible on 2 cores."""
import pytest
import torch

torch.manual_seed(0)
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many small passes (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a busy
    2-core machine two intra-op threads spin against each other and make each pass ~40x slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
