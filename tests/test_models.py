import pytest
import torch

from samrepro.errors import UserError
from samrepro.io.models import load_model, prunable_linears, tiny_model


def test_embedded_model_is_smollm2_with_seven_prunable_linears_per_layer():
    model, tokenizer = load_model("embedded")
    names = prunable_linears(model)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and len(names) == 30 * 7
    assert names["model.layers.0.mlp.down_proj"].weight.shape == (576, 1536)
    assert tokenizer("Hello")["input_ids"][0] != tokenizer.bos_token_id  # adds no BOS
    # the dequantized GGUF weights are not degenerate: the model predicts text
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.no_grad():
        next_id = model(ids).logits[0, -1].argmax()
    assert "Paris" in tokenizer.decode(next_id)


def test_num_layers_cuts_the_model():
    model, _ = load_model("tiny-llama", num_layers=1)
    assert model.config.num_hidden_layers == 1 and len(prunable_linears(model)) == 7
    with pytest.raises(UserError, match="num_layers"):
        load_model("tiny-opt", num_layers=5)


def test_unknown_model_is_a_user_error_naming_the_choices(tmp_path):
    with pytest.raises(UserError, match="embedded"):
        load_model("no-such-org/no-such-model")
    with pytest.raises(UserError, match="local folder"):
        load_model(str(tmp_path))


def test_unsupported_architecture_says_how_to_add_it():
    model = tiny_model("opt")
    model.config.model_type = "gpt2"
    with pytest.raises(UserError, match="ARCHITECTURES"):
        prunable_linears(model)
