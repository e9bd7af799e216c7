"""Random-weight GGUF models of a given shape, written with the `gguf`
package: Llama architecture (dense, or a mixture of experts that llama.cpp
runs as one), Q8_0 matrices from gguf.quants, float32 norms and router, and a
synthetic SentencePiece-style vocabulary so that llama.cpp loads it as it
loads a real model. No weights are downloaded: the figures of a decode step
depend on the shapes, not on the values.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

Q8_0 = gguf.GGMLQuantizationType.Q8_0


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    ffn: int  # intermediate size (of one expert for a mixture of experts)
    heads: int
    kv_heads: int
    vocab: int
    experts: int = 0  # routed experts; 0 for a dense model
    experts_per_token: int = 0

    def hf_config(self) -> dict[str, Any]:
        """The shape as the Hugging Face config that exogpu.models reads."""
        config: dict[str, Any] = {
            "model_type": "mixtral" if self.experts else "llama",
            "hidden_size": self.hidden,
            "intermediate_size": self.ffn,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "vocab_size": self.vocab,
            "tie_word_embeddings": False,
        }
        if self.experts:
            config["num_local_experts"] = self.experts
            config["num_experts_per_tok"] = self.experts_per_token
        return config


TINYLLAMA = Shape("tinyllama-1.1b", layers=22, hidden=2048, ffn=5632, heads=32, kv_heads=4,
                  vocab=32000)
MOE = Shape("moe-8x2", layers=12, hidden=1024, ffn=2816, heads=16, kv_heads=4, vocab=32000,
            experts=8, experts_per_token=2)
SHAPES = {s.name: s for s in (TINYLLAMA, MOE)}

# SentencePiece token types as GGUF stores them.
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def _vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """<unk> <s> </s>, the 256 byte pieces, then distinct made-up pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256
    scores = [0.0] * len(tokens)
    n = 0
    while len(tokens) < size:
        piece = np.base_repr(n, 36).lower()
        tokens.append("\u2581" + piece if n % 2 else piece)  # "▁" marks a word start
        types.append(_NORMAL)
        scores.append(-float(n))
        n += 1
    return tokens, scores, types


def _write(shape: Shape, path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    head_dim = shape.hidden // shape.heads
    w.add_name(f"random-{shape.name}")
    w.add_context_length(2048)
    w.add_embedding_length(shape.hidden)
    w.add_block_count(shape.layers)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(shape.vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if shape.experts:
        w.add_expert_count(shape.experts)
        w.add_expert_used_count(shape.experts_per_token)
    tokens, scores, types = _vocabulary(shape.vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def matrix(name: str, *dims: int) -> None:
        x = rng.standard_normal(dims, dtype=np.float32) * 0.02
        w.add_tensor(name, gguf.quants.quantize(x, Q8_0), raw_dtype=Q8_0)

    def ones(name: str, *dims: int) -> None:
        w.add_tensor(name, np.ones(dims, dtype=np.float32))

    h, kv = shape.hidden, head_dim * shape.kv_heads
    matrix("token_embd.weight", shape.vocab, h)
    for i in range(shape.layers):
        b = f"blk.{i}"
        ones(f"{b}.attn_norm.weight", h)
        matrix(f"{b}.attn_q.weight", h, h)
        matrix(f"{b}.attn_k.weight", kv, h)
        matrix(f"{b}.attn_v.weight", kv, h)
        matrix(f"{b}.attn_output.weight", h, h)
        ones(f"{b}.ffn_norm.weight", h)
        if shape.experts:
            e = shape.experts
            w.add_tensor(f"{b}.ffn_gate_inp.weight",
                         rng.standard_normal((e, h), dtype=np.float32))
            matrix(f"{b}.ffn_gate_exps.weight", e, shape.ffn, h)
            matrix(f"{b}.ffn_up_exps.weight", e, shape.ffn, h)
            matrix(f"{b}.ffn_down_exps.weight", e, h, shape.ffn)
        else:
            matrix(f"{b}.ffn_gate.weight", shape.ffn, h)
            matrix(f"{b}.ffn_up.weight", shape.ffn, h)
            matrix(f"{b}.ffn_down.weight", h, shape.ffn)
    ones("output_norm.weight", h)
    matrix("output.weight", shape.vocab, h)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ensure_model(shape: Shape, directory: Path) -> Path:
    """The GGUF of `shape` in `directory`, written first when absent (the
    file name carries a digest of the shape, so a changed shape is rewritten)."""
    digest = hashlib.sha256(json.dumps(asdict(shape), sort_keys=True).encode()).hexdigest()[:12]
    path = directory / f"{shape.name}-q8_0-{digest}.gguf"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    print(f"writing {path.name} (random weights, Q8_0)", flush=True)
    _write(shape, partial)
    os.replace(partial, path)
    return path


def unit_bytes(path: Path) -> list[int]:
    """Bytes of each unit llama.cpp places, as the file holds them: every
    block, then the output unit (final norm + output matrix); the token
    embedding (which stays on the client) is left out."""
    reader = gguf.GGUFReader(str(path))
    sizes: dict[str, int] = {}
    for t in reader.tensors:
        name = str(t.name)
        unit = name.split(".")[1] if name.startswith("blk.") else name.split(".")[0]
        sizes[unit] = sizes.get(unit, 0) + int(t.n_bytes)
    blocks = sorted(int(k) for k in sizes if k.isdigit())
    return [sizes[str(i)] for i in blocks] + [sizes["output"] + sizes["output_norm"]]
