"""Layer lists of common models, computed from their published configurations.

A model is its Hugging Face ``config.json`` values (embedded in catalog.json
for the catalog, or read from any file by path). ``Model.layers()`` turns them
into the placement contract's layers: the embedding, every decoder block, and
the output head (final norm + LM head), each with

* ``weight_bytes``: parameters x bytes per parameter of the dtype (bf16 2,
  fp8 1, int4 0.5 plus one bf16 scale per 128 weights, q8_0 1 plus one
  float16 scale per 32 weights: GGUF's Q8_0 blocks);
* ``kv_bytes_per_token``: K and V of every KV head (GQA) in the KV dtype
  (bf16 unless told), or for multi-head latent attention (DeepSeek) the
  compressed latent plus the RoPE key: kv_lora_rank + qk_rope_head_dim values;
* ``flops_per_token``: 2 per active parameter of the matrix products (for a
  mixture of experts, only the routed top-k and the shared experts) plus
  attention over the context, 4 x heads x head_dim x context;
* ``activation_bytes``: the hidden state passed to the next stage, in the
  activation dtype (bf16 unless told; llama.cpp passes float32);
* ``read_bytes_per_token``: the weight bytes one decode step of ``batch``
  sequences streams: a dense layer all its weights, the embedding ``batch``
  rows (a lookup, not a product), a mixture-of-experts block its attention,
  router and shared experts plus the expected number of distinct routed
  experts the batch touches, ``E * (1 - (1 - k/E) ** batch)`` for ``k`` of
  ``E`` experts per token.

All experts' weights are resident; only the active ones cost FLOPs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from exogpu import InvalidArgument
from exogpu.bounded_input import load_json

DTYPES = ("bf16", "fp8", "int4", "q8_0")
INT4_GROUP = 128  # weights per bf16 scale
Q8_0_BLOCK = 32  # weights per float16 scale in GGUF's Q8_0
ACTIVATION_DTYPES = {"bf16": 2, "f32": 4}


def bytes_per_parameter(dtype: str) -> float:
    if dtype == "bf16":
        return 2.0
    if dtype == "fp8":
        return 1.0
    if dtype == "int4":
        return 0.5 + 2.0 / INT4_GROUP
    if dtype == "q8_0":
        return 1.0 + 2.0 / Q8_0_BLOCK
    raise InvalidArgument(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")


@dataclass(frozen=True)
class ModelLayer:
    name: str
    parameters: int  # resident parameters
    active_parameters: int  # parameters one token multiplies through
    weight_bytes: int
    kv_bytes_per_token: int
    flops_per_token: float
    activation_bytes: int
    read_bytes_per_token: int | None = None  # None: weight_bytes
    # (routed experts E, experts per token k, parameters of one expert) of a
    # mixture-of-experts block; None for every other layer.
    experts: tuple[int, int, int] | None = None


def expected_experts(routed: int, top_k: int, batch: int) -> float:
    """Distinct experts `batch` tokens touch when each picks `top_k` of
    `routed` (uniformly): E * (1 - (1 - k/E) ** B)."""
    return routed * (1.0 - (1.0 - top_k / routed) ** batch)


@dataclass(frozen=True)
class Model:
    name: str
    config: dict[str, Any]

    # -- construction --------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any], name: str = "model") -> Model:
        model = cls(name=name, config=dict(config))
        model._shape()  # validates the fields now, naming a missing one
        return model

    @classmethod
    def from_file(cls, path: str | Path) -> Model:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise InvalidArgument(f"cannot read model config {path}: {e.strerror}") from None
        data = load_json(raw, what=f"model config {path}", error=InvalidArgument)
        if not isinstance(data, dict):
            raise InvalidArgument(f"model config {path} must be a JSON object")
        name = str(data.get("_name_or_path") or path.parent.name or path.stem)
        return cls.from_config(data, name=name)

    # -- figures -------------------------------------------------------------
    def parameter_count(self) -> int:
        """Unique parameters (a tied LM head counted once)."""
        s = self._shape()
        total = sum(layer.parameters for layer in self._param_layers())
        if s["tie"]:
            total -= s["vocab"] * s["hidden"]
        return total

    def active_parameter_count(self) -> int:
        return sum(layer.active_parameters for layer in self._param_layers())

    def layers(
        self,
        dtype: str = "bf16",
        context_tokens: int = 0,
        kv_dtype: str = "bf16",
        batch: int = 1,
        activation_dtype: str = "bf16",
    ) -> list[ModelLayer]:
        """The contract's layers for weights in `dtype`, attention over
        `context_tokens`, decode steps of `batch` sequences, hidden states
        passed between stages in `activation_dtype` (the logits are float32)."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidArgument(f"batch must be a positive integer, got {batch!r}")
        wbytes = bytes_per_parameter(dtype)
        kv_elem = {"bf16": 2, "fp8": 1}.get(kv_dtype)
        if kv_elem is None:
            raise InvalidArgument(f"kv_dtype must be bf16 or fp8, got {kv_dtype!r}")
        act_elem = ACTIVATION_DTYPES.get(activation_dtype)
        if act_elem is None:
            raise InvalidArgument(
                f"activation_dtype must be one of {', '.join(ACTIVATION_DTYPES)}, "
                f"got {activation_dtype!r}"
            )
        if (
            isinstance(context_tokens, bool)
            or not isinstance(context_tokens, int)
            or context_tokens < 0
        ):
            raise InvalidArgument(
                f"context_tokens must be a non-negative integer, got {context_tokens!r}"
            )
        s = self._shape()
        out = []
        for layer in self._param_layers():
            is_block = layer.kv_bytes_per_token > 0
            attention = 4.0 * s["heads"] * s["attn_dim"] * context_tokens if is_block else 0.0
            if layer.name == "embed":  # a lookup: batch rows of the table
                read = min(batch, s["vocab"]) * s["hidden"]
            elif layer.experts is not None:
                routed, top_k, expert = layer.experts
                touched = expected_experts(routed, top_k, batch)
                read = round(layer.parameters - routed * expert + touched * expert)
            else:
                read = layer.parameters
            out.append(
                ModelLayer(
                    name=layer.name,
                    parameters=layer.parameters,
                    active_parameters=layer.active_parameters,
                    weight_bytes=round(layer.parameters * wbytes),
                    kv_bytes_per_token=layer.kv_bytes_per_token * kv_elem,
                    flops_per_token=2.0 * layer.active_parameters + attention,
                    # the output head hands on float32 logits, every other
                    # layer a hidden state in the activation dtype
                    activation_bytes=layer.activation_bytes
                    if layer.name == "output"
                    else s["hidden"] * act_elem,
                    read_bytes_per_token=round(read * wbytes),
                    experts=layer.experts,
                )
            )
        return out

    # -- internals -----------------------------------------------------------
    def _get(self, key: str, default: Any = None) -> Any:
        value = self.config.get(key, default)
        if value is None:
            raise InvalidArgument(f"model config {self.name!r}: {key} is required")
        if isinstance(default, bool):
            return bool(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgument(
                f"model config {self.name!r}: {key} must be a non-negative integer"
            )
        return value

    def _shape(self) -> dict[str, Any]:
        hidden = self._get("hidden_size")
        heads = self._get("num_attention_heads")
        if hidden == 0 or heads == 0:
            raise InvalidArgument(
                f"model config {self.name!r}: hidden_size and heads must be positive"
            )
        head_dim = self._get("head_dim", hidden // heads)
        return {
            "hidden": hidden,
            "layers": self._get("num_hidden_layers"),
            "heads": heads,
            "kv_heads": self._get("num_key_value_heads", heads),
            "head_dim": head_dim,
            "attn_dim": self._get("qk_nope_head_dim", 0) + self._get("qk_rope_head_dim", 0)
            if "kv_lora_rank" in self.config
            else head_dim,
            "vocab": self._get("vocab_size"),
            "tie": self._get("tie_word_embeddings", False),
        }

    def _attention(self, s: dict[str, Any]) -> tuple[int, int]:
        """(parameters, KV values per token) of one attention block."""
        h = s["hidden"]
        if "kv_lora_rank" in self.config:  # multi-head latent attention
            q_rank = self.config.get("q_lora_rank")
            kv_rank = self._get("kv_lora_rank")
            nope = self._get("qk_nope_head_dim")
            rope = self._get("qk_rope_head_dim")
            v_dim = self._get("v_head_dim")
            heads = s["heads"]
            q = (
                h * heads * (nope + rope)
                if not q_rank
                else h * q_rank + q_rank + q_rank * heads * (nope + rope)
            )
            kv = h * (kv_rank + rope) + kv_rank + kv_rank * heads * (nope + v_dim)
            o = heads * v_dim * h
            return q + kv + o, kv_rank + rope
        d = s["head_dim"]
        q = h * s["heads"] * d
        kv = 2 * h * s["kv_heads"] * d
        o = s["heads"] * d * h
        bias = 0
        if self.config.get("model_type") in ("qwen2", "qwen2_moe") or self.config.get(
            "attention_bias", False
        ):
            bias = s["heads"] * d + 2 * s["kv_heads"] * d
        return q + kv + o + bias, 2 * s["kv_heads"] * d

    def _mlp(self, index: int, s: dict[str, Any]) -> tuple[int, int, tuple[int, int, int] | None]:
        """(resident, active) parameters of block `index`'s feed-forward part,
        and (routed experts, experts per token, parameters of one expert) for
        a mixture of experts."""
        h = s["hidden"]
        gated = 3 * h  # gate, up and down projections per intermediate unit
        routed = (
            self.config.get("n_routed_experts")
            or self.config.get("num_local_experts")
            or (self.config.get("num_experts"))
        )
        dense_first = self.config.get("first_k_dense_replace", 0) or 0
        freq = self.config.get("moe_layer_freq", 1) or 1
        if not routed or index < dense_first or (index - dense_first) % freq != 0:
            n = gated * self._get("intermediate_size")
            return n, n, None
        top_k = self._get("num_experts_per_tok")
        expert_size = self.config.get("moe_intermediate_size") or self._get("intermediate_size")
        shared = (self.config.get("n_shared_experts") or 0) * gated * expert_size
        shared += gated * (self.config.get("shared_expert_intermediate_size") or 0)
        router = h * routed
        expert = gated * expert_size
        return (
            routed * expert + shared + router,
            top_k * expert + shared + router,
            (routed, top_k, expert),
        )

    def _param_layers(self) -> list[ModelLayer]:
        s = self._shape()
        h, vocab = s["hidden"], s["vocab"]
        act = 2 * h
        attn, kv_values = self._attention(s)
        layers = [ModelLayer("embed", vocab * h, 0, 0, 0, 0.0, act)]
        for i in range(s["layers"]):
            mlp, mlp_active, experts = self._mlp(i, s)
            norms = 2 * h
            layers.append(
                ModelLayer(
                    f"block{i}",
                    attn + mlp + norms,
                    attn + mlp_active + norms,
                    0,
                    kv_values,
                    0.0,
                    act,
                    experts=experts,
                )
            )
        head = vocab * h + h
        layers.append(ModelLayer("output", head, head, 0, 0, 0.0, 4 * vocab))
        return layers


def catalog() -> dict[str, dict[str, Any]]:
    """The built-in models' published configuration values, by name."""
    text = resources.files("exogpu.models").joinpath("catalog.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def names() -> list[str]:
    return sorted(catalog())


def get(name_or_path: str | Path) -> Model:
    """A catalog model by name (case-insensitive), or a config.json by path."""
    key = str(name_or_path).lower()
    known = catalog()
    if key in known:
        return Model.from_config(known[key], name=key)
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if path.exists():
        return Model.from_file(path)
    raise InvalidArgument(
        f"unknown model {str(name_or_path)!r}: not in the catalog ({', '.join(names())}) "
        "and no such config.json file"
    )


__all__ = [
    "DTYPES",
    "Model",
    "ModelLayer",
    "bytes_per_parameter",
    "catalog",
    "expected_experts",
    "get",
    "names",
]
