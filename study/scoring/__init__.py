"""Layer `scoring`: `camstudy score` and what it writes.

Holds the scorer (maps cached on disk, metric families run per batch, faithfulness.csv written row by
row), the metric families, the metric catalogue, the names and columns of its files, its figures, and
torchrun helpers. May import: `metrics`, `study.images`, `study.models`, `study.explainers`.
`catalog`, `files` and `figures` import no torch, so the results layer can read what scoring wrote.
"""
