"""What a participant id is: the rules every part of camstudy that reads or makes one agrees on.

The simulator makes ids with `SIM_PREFIX`, and the report, the export's codebook and the tests
recognise simulated participants by it; keeping it here, rather than in the simulator, lets them
know the rule without importing the survey machinery.
"""
from __future__ import annotations

SIM_PREFIX = "SIM-"  # external ids of simulated participants start with this; no real panel id does
