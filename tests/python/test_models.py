"""Model layer lists against the published parameter counts and formulas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import exogpu
from exogpu import models

# Published totals (DeepSeek-V3: 671B without its 14B multi-token-prediction module).
PUBLISHED = {
    "llama-3-8b": 8.03e9,
    "llama-3-70b": 70.6e9,
    "llama-3.1-405b": 405.9e9,
    "qwen2.5-72b": 72.7e9,
    "mixtral-8x7b": 46.7e9,
    "deepseek-v3": 671e9,
}
ACTIVE = {"mixtral-8x7b": 12.9e9, "deepseek-v3": 37e9}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_totals(name: str) -> None:
    model = models.get(name)
    assert model.parameter_count() == pytest.approx(PUBLISHED[name], rel=0.01)
    layers = model.layers("bf16")
    assert layers[0].name == "embed" and layers[-1].name == "output"
    assert len(layers) == model.config["num_hidden_layers"] + 2
    assert sum(x.weight_bytes for x in layers) == 2 * model.parameter_count()


@pytest.mark.parametrize("name", sorted(ACTIVE))
def test_moe_active_parameters(name: str) -> None:
    # within 3%: the published figures round and count the embedding differently
    assert models.get(name).active_parameter_count() == pytest.approx(ACTIVE[name], rel=0.03)


def test_kv_bytes_and_dtypes() -> None:
    llama = models.get("llama-3-70b").layers("fp8")
    block = llama[1]
    assert block.kv_bytes_per_token == 2 * 8 * 128 * 2  # K and V, 8 KV heads, bf16
    bf16 = models.get("llama-3-70b").layers("bf16")[1]
    assert block.weight_bytes * 2 == bf16.weight_bytes
    int4 = models.get("llama-3-70b").layers("int4")[1]
    assert int4.weight_bytes == round(bf16.weight_bytes / 2 * (0.5 + 2 / 128))
    ds = models.get("deepseek-v3").layers("bf16")
    assert ds[1].kv_bytes_per_token == (512 + 64) * 2  # MLA latent + RoPE key
    # three dense layers first, then mixture-of-experts layers with far more weights
    assert ds[4].weight_bytes > 10 * ds[1].weight_bytes
    assert ds[4].flops_per_token < ds[4].weight_bytes  # active experts only


def test_attention_flops_grow_with_context() -> None:
    m = models.get("llama-3-8b")
    short, long = m.layers(context_tokens=0)[1], m.layers(context_tokens=1000)[1]
    assert long.flops_per_token - short.flops_per_token == 4 * 32 * 128 * 1000
    assert short.flops_per_token == 2 * short.active_parameters


def test_config_by_path(tmp_path: Path) -> None:
    config = dict(models.catalog()["llama-3-8b"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    from_file = models.get(tmp_path / "config.json")
    assert from_file.parameter_count() == models.get("llama-3-8b").parameter_count()
    assert models.get(tmp_path).parameter_count() == from_file.parameter_count()
    del config["hidden_size"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(exogpu.InvalidArgument, match="hidden_size is required"):
        models.get(tmp_path / "config.json")
    with pytest.raises(exogpu.InvalidArgument, match="unknown model"):
        models.get("no-such-model")
    with pytest.raises(exogpu.InvalidArgument, match="dtype"):
        models.get("llama-3-8b").layers("fp4")


def test_read_bytes_dense_embedding_and_moe() -> None:
    from exogpu.models import expected_experts

    # Dense: a block reads all of its weights; the embedding reads batch rows.
    llama = models.get("llama-3-8b").layers("bf16", batch=4)
    assert all(x.read_bytes_per_token == x.weight_bytes for x in llama[1:])
    assert llama[0].read_bytes_per_token == 4 * 4096 * 2
    # Mixtral: 8 experts of 3 x 4096 x 14336 parameters, 2 per token.
    expert = 3 * 4096 * 14336
    for batch, touched in [(1, 2.0), (2, 8 * (1 - 0.75**2)), (64, 8 * (1 - 0.75**64))]:
        assert expected_experts(8, 2, batch) == pytest.approx(touched)
        block = models.get("mixtral-8x7b").layers("bf16", batch=batch)[1]
        assert block.weight_bytes - block.read_bytes_per_token == pytest.approx(
            2 * (8 - touched) * expert, abs=2
        )
    # DeepSeek-V3: 8 of 256 experts; the first 3 blocks are dense.
    ds = models.get("deepseek-v3").layers("fp8", batch=1)
    assert ds[1].read_bytes_per_token == ds[1].weight_bytes
    moe = ds[4]
    assert moe.experts == (256, 8, 3 * 7168 * 2048)
    assert moe.weight_bytes - moe.read_bytes_per_token == 248 * 3 * 7168 * 2048
    # FLOPs follow the active experts whatever the batch.
    assert (
        moe.flops_per_token == models.get("deepseek-v3").layers("fp8", batch=8)[4].flops_per_token
    )


def test_moe_read_bytes_speed_up_decode() -> None:
    from exogpu.cluster import Cluster
    from exogpu.placement import Problem, solve

    home = Cluster.from_file(
        Path(__file__).resolve().parents[2] / "benchmarks" / "clusters" / "home-mixed.json"
    )
    problem = Problem.from_model(models.get("mixtral-8x7b"), home, dtype="int4")
    v1 = problem.to_json()
    for x in v1["layers"]:
        x.pop("read_bytes_per_token", None)
    v1["version"] = 1
    before = solve(v1, "latency")
    after = solve(problem, "latency")
    assert after.single_stream_tokens_per_second is not None
    assert before.single_stream_tokens_per_second is not None
    # 2 of 8 experts streamed: clearly faster, never more than 4x (attention stays)
    ratio = after.single_stream_tokens_per_second / before.single_stream_tokens_per_second
    assert 1.5 < ratio < 4.0


def test_q8_0_weights_and_float32_activations() -> None:
    # GGUF's Q8_0 stores 32 weights as 32 int8 and one float16 scale: 34 bytes
    config = {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
              "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000}
    model = models.Model.from_config(config, name="tinyllama-shape")
    q8 = model.layers("q8_0", activation_dtype="f32")
    bf16 = model.layers("bf16")
    block_params = 2 * 2048 * 2048 + 2 * 2048 * 256 + 3 * 2048 * 5632 + 2 * 2048
    assert q8[1].weight_bytes == block_params // 32 * 34
    assert q8[0].weight_bytes == 32000 * 2048 // 32 * 34
    # llama.cpp hands float32 hidden states between devices; the logits are float32 always
    assert [x.activation_bytes for x in q8[:-1]] == [4 * 2048] * 23
    assert [x.activation_bytes for x in bf16[:-1]] == [2 * 2048] * 23
    assert q8[-1].activation_bytes == bf16[-1].activation_bytes == 4 * 32000
    with pytest.raises(exogpu.InvalidArgument, match="activation_dtype must be one of"):
        model.layers("q8_0", activation_dtype="f16")
