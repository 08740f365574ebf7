"""Layer `protocol`: what a study is before anything is built.

Holds the study config and its validation, languages and the message catalogue, trial plans
(Latin square, quotas, practice, attention checks) and the task types (`study.protocol.tasks`).
May import: `study.images` (image-set specs only). Never imports torch.
"""
