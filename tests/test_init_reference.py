"""Weight scales are judged against the model's own initialization when it has one
(transformers' ``_init_weights``), never against PyTorch's default alone: an untrained
transformers model must not read as "weights collapsed by weight decay"."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.evidence import init_reference

transformers = pytest.importorskip("transformers")


def _opt(planted: int = 8) -> nn.Module:
    cfg = transformers.OPTConfig(vocab_size=40, hidden_size=16, ffn_dim=64, num_hidden_layers=1,
                                 num_attention_heads=2, max_position_embeddings=32,
                                 word_embed_proj_dim=16, activation_function="relu")
    torch.manual_seed(0)
    model = transformers.OPTForCausalLM(cfg).eval()
    with torch.no_grad():
        model.model.decoder.layers[0].fc1.bias[:planted] = -10.0  # planted dead
    return model


def _scan(model: nn.Module) -> deadrelu.Report:
    ids = torch.randint(1, 40, (64, 12), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deadrelu.scan(model, [{"input_ids": ids[:32]}, {"input_ids": ids[32:]}])


def test_an_untrained_transformers_model_is_not_called_weight_decayed():
    model = _opt()
    report = _scan(model)
    site = "model.decoder.layers.0.activation_fn"
    assert list(report.units_in_state(site, "dead")) == list(range(8))
    layer = report.evidence["layers"]["model.decoder.layers.0.fc1"]
    fc1 = model.model.decoder.layers[0].fc1
    measured = float(fc1.weight.norm(dim=1).median())
    assert layer["init"]["by"] == "OPTForCausalLM._init_weights"
    # normal(0, 0.02) over fan-in 16: a row norm of about 0.08, far below PyTorch's 0.58
    assert layer["init"]["weight_norm"] == pytest.approx(measured, rel=0.25)
    assert layer["init"]["bias_abs"] == 0.0
    codes = {f.code for f in report.findings if f.layer == site}
    assert "DR002" not in codes  # at PyTorch's default scale this read as collapsed weights
    assert "DR001" in codes  # the planted −10 biases are the trace


def test_measuring_the_init_leaves_the_model_and_the_rng_alone():
    model = _opt()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    _scan(model)
    assert torch.equal(torch.random.get_rng_state(), state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_layer_initialized_from_its_parent_block():
    # T5 draws wi/wo in _init_weights(T5DenseActDense), not in _init_weights(nn.Linear)
    cfg = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=1,
                                num_heads=2)
    model = transformers.T5Model(cfg)
    block = model.encoder.block[0].layer[1].DenseReluDense
    wo = block.wo.weight.clone()
    found = init_reference(model, block.wi, block, "wi")
    assert found is not None
    # std d_model^-0.5 over fan-in d_model: row norm about 1, not torch's default ~0.58
    assert found["weight_norm"] == pytest.approx(1.0, rel=0.15)
    assert found["bias_abs"] is None  # T5 has no biases
    assert torch.equal(block.wo.weight, wo)


def test_plain_torch_models_keep_pytorchs_default_as_the_reference():
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    assert init_reference(model, model[0], model, "0") is None
    report = _scan_plain(model)
    assert "init" not in report.evidence["layers"]["0"]


def _scan_plain(model: nn.Module) -> deadrelu.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return deadrelu.scan(model, torch.randn(50, 6))
