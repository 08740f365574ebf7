"""Layer `results`: from stored answers to a paper's tables.

Holds the statistics (`analysis`), mixed models (`mixed`, checked against lme4), power simulation,
`analysis.R`, the export with its codebook, and the HTML report. May import: `study.store`,
`study.protocol`, and the torch-free files of `study.scoring` (`catalog`, `files`, `figures`).
Never imports torch.
"""
