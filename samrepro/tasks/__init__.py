"""Local lm-evaluation-harness tasks (YAML) over the data folder's zero-shot files; see
loaders.py for the file layout and samrepro.evaluate.zero_shot for their use."""
