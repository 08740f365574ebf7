"""Shared pytest setup: deterministic, single-process torch so tests are reproducible on 2 cores."""
import torch

torch.manual_seed(0)
torch.set_num_threads(2)
