"""Make a tiny random Llama model on local disk: no download, small enough for vLLM on a CPU.

2 layers, hidden size 128, 2 heads of 64 (vLLM's CPU attention refuses head_dim 16), and a
byte-level BPE tokenizer with a 512-token vocabulary trained on a few sentences.

Usage: python tiny_model.py OUT_DIR [--architecture TTLlamaForCausalLM]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

_CORPUS = [
    "Tenstorrent builds computers for AI.",
    "The quick brown fox jumps over the lazy dog.",
    "Metal and Forge are two ways to run a model.",
    "vLLM serves large language models with high throughput.",
    "A small model made on the spot, with random weights, for tests.",
] * 20


def make_tiny_model(out: Path, architecture: str = "LlamaForCausalLM") -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    if (out / "config.json").exists():
        return out
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>"
    )
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    config_path = out / "config.json"
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data["architectures"] = [architecture]
    data["torch_dtype"] = "float32"
    config_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--architecture", default="LlamaForCausalLM")
    args = parser.parse_args()
    print(make_tiny_model(args.out, args.architecture))
