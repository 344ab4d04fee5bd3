"""Input and output: models, data, zero-shot tasks, evaluation, cache, resume, provenance, files."""
