"""The study: presets and settings, runs (arms x seeds), tables, claims, statistics, reports, plots, verify and the README generator."""
