"""What a model is, for tables and figures: the preset keys name the models by how samrepro finds
them (`embedded`), readers want to know what they are (SmolLM2-135M)."""

from __future__ import annotations

LABELS = {
    "embedded": "SmolLM2-135M",
    "opt-ptb-standin": "OPT stand-in (2.7M, PTB)",
    "smoke-llama": "smoke LLaMA (tiny, PTB)",
    "smoke-opt": "smoke OPT (tiny, PTB)",
    "tiny-llama": "tiny LLaMA (random)",
    "tiny-opt": "tiny OPT (random)",
}


def model_label(spec: str) -> str:
    """'embedded' → 'SmolLM2-135M', 'embedded@2' → 'SmolLM2-135M (first 2 layers)', a hub id or
    folder as it is."""
    name, _, layers = str(spec).partition("@")
    label = LABELS.get(name, name)
    return f"{label} (first {layers} layers)" if layers else label


def labelled(text: str) -> str:
    """A line that starts with a preset key ('embedded isc vs obs …') with the model named as
    what it is ('SmolLM2-135M isc vs obs …')."""
    head, _, rest = text.partition(" ")
    return f"{model_label(head)} {rest}" if head in LABELS else text
