"""Layer `stimuli`: `camstudy build` — a config becomes a study folder with its pictures.

Holds the build (units, cells, rendering, one transaction into the store), pictures of maps
(`render`) and the examples task's pictures (`example_pictures`). May import: `study.store`,
`study.protocol`, `study.images`, `study.models`, `study.explainers`, `metrics`.
"""
