"""The config.json files of the paper's models, as the hub serves them (written here: the hub
is unreachable from the test machines). Fields that transformers fills with defaults are as
in the files; the numbers are the public ones."""

_OPT = {"_name_or_path": None, "_remove_final_layer_norm": False, "activation_dropout": 0.0,
        "activation_function": "relu", "architectures": ["OPTForCausalLM"],
        "attention_dropout": 0.0, "bos_token_id": 2, "do_layer_norm_before": True,
        "dropout": 0.1, "eos_token_id": 2, "init_std": 0.02, "layerdrop": 0.0,
        "max_position_embeddings": 2048, "model_type": "opt", "pad_token_id": 1,
        "prefix": "</s>", "torch_dtype": "float16", "transformers_version": "4.21.0.dev0",
        "use_cache": True, "vocab_size": 50272}
_LLAMA = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
          "hidden_act": "silu", "initializer_range": 0.02, "model_type": "llama",
          "tie_word_embeddings": False, "torch_dtype": "float16", "use_cache": True,
          "vocab_size": 32000}
_LLAMA1 = {**_LLAMA, "max_position_embeddings": 2048, "max_sequence_length": 2048,
           "pad_token_id": 0, "rms_norm_eps": 1e-06, "transformers_version": "4.28.0.dev0"}
_LLAMA2 = {**_LLAMA, "max_position_embeddings": 4096, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
           "rope_scaling": None, "transformers_version": "4.31.0.dev0"}

CONFIGS = {
    "facebook/opt-125m": {**_OPT, "_name_or_path": "facebook/opt-125m", "ffn_dim": 3072,
                          "hidden_size": 768, "num_attention_heads": 12,
                          "num_hidden_layers": 12, "word_embed_proj_dim": 768},
    "facebook/opt-350m": {**_OPT, "_name_or_path": "facebook/opt-350m", "ffn_dim": 4096,
                          "hidden_size": 1024, "num_attention_heads": 16,
                          "num_hidden_layers": 24, "word_embed_proj_dim": 512,
                          "do_layer_norm_before": False},
    "facebook/opt-1.3b": {**_OPT, "_name_or_path": "facebook/opt-1.3b", "ffn_dim": 8192,
                          "hidden_size": 2048, "num_attention_heads": 32,
                          "num_hidden_layers": 24, "word_embed_proj_dim": 2048},
    "huggyllama/llama-7b": {**_LLAMA1, "hidden_size": 4096, "intermediate_size": 11008,
                            "num_attention_heads": 32, "num_hidden_layers": 32},
    "huggyllama/llama-13b": {**_LLAMA1, "hidden_size": 5120, "intermediate_size": 13824,
                             "num_attention_heads": 40, "num_hidden_layers": 40},
    "meta-llama/Llama-2-7b-hf": {**_LLAMA2, "hidden_size": 4096, "intermediate_size": 11008,
                                 "num_attention_heads": 32, "num_hidden_layers": 32,
                                 "num_key_value_heads": 32},
    "meta-llama/Llama-2-13b-hf": {**_LLAMA2, "hidden_size": 5120, "intermediate_size": 13824,
                                  "num_attention_heads": 40, "num_hidden_layers": 40,
                                  "num_key_value_heads": 40},
    "meta-llama/Llama-2-70b-hf": {**_LLAMA2, "hidden_size": 8192, "intermediate_size": 28672,
                                  "num_attention_heads": 64, "num_hidden_layers": 80,
                                  "num_key_value_heads": 8},
}
# Parameter counts as published on the models' pages (millions)
PUBLISHED_MILLIONS = {"facebook/opt-125m": 125, "facebook/opt-350m": 331,
                      "facebook/opt-1.3b": 1316, "huggyllama/llama-7b": 6738,
                      "huggyllama/llama-13b": 13016, "meta-llama/Llama-2-7b-hf": 6738,
                      "meta-llama/Llama-2-13b-hf": 13016, "meta-llama/Llama-2-70b-hf": 68977}


def write(folder, hub_id):
    """A checkpoint folder holding only config.json."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIGS[hub_id], indent=2))
    return folder
