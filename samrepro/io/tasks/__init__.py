"""Local lm-evaluation-harness tasks (YAML) over the data folder's zero-shot files; see
loaders.py for the file layout and samrepro.io.evaluate.zero_shot for their use."""

# Cleaned HellaSwag documents by dataset fingerprint, kept here (not in loaders.py, which the
# harness imports anew from its file path for every task it builds).
HELLASWAG_DOCS: dict = {}
