"""Subcommands of the `camstudy` CLI; see `study.cli`."""
