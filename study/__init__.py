"""camstudy's core library: models, explainers, stimuli, storage, study design, export and the CLI."""
