"""A broad check on real architectures from ``transformers``, built from tiny configs.

The reference does not use deadrelu's collector: forward pre-hooks on the
activation modules compute, per unit, on how many positions and in how many
samples the pre-activation (the module's input) was > 0, over the dim that the
architecture documents as its units (channels of conv stacks, features of token
streams). Every such module must be a site with exactly those counts, and no
tanh/sigmoid call inside an activation module may be a site of its own.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deadrelu
from deadrelu.kinds import COMPOSITE_CLASSES, MODULES, class_name

transformers = pytest.importorskip("transformers")

N = 4  # samples


def _is_activation(m: nn.Module) -> bool:
    return type(m) in MODULES or class_name(type(m)) in COMPOSITE_CLASSES


def reference(model: nn.Module, batches, channel_paths) -> dict[str, dict[str, np.ndarray]]:
    """Per activation module: active positions and active samples per unit, from its input."""
    counts: dict[str, dict[str, np.ndarray]] = {}
    handles = []

    def hook(path):
        def pre(module, args):
            x = args[0].detach().double()
            unit = 1 if any(path.startswith(p) for p in channel_paths) else x.ndim - 1
            a = x.movedim(unit, 1).reshape(x.shape[0], x.shape[unit], -1) > 0  # (S, U, R)
            c = counts.setdefault(path, {"active": 0, "sample_active": 0})
            c["active"] = c["active"] + a.sum((0, 2)).numpy()
            c["sample_active"] = c["sample_active"] + a.any(2).sum(0).numpy()
        return pre

    for path, m in model.named_modules():
        if _is_activation(m):
            handles.append(m.register_forward_pre_hook(hook(path)))
    try:
        model.eval()
        with torch.no_grad():
            for b in batches:
                model(**b) if isinstance(b, dict) else model(b)
    finally:
        for h in handles:
            h.remove()
    return counts


def _gpt2():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=64, n_positions=16)
    return transformers.GPT2Model(cfg), torch.randint(0, 64, (N, 8)), ()


def _clip():
    cfg = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=16, patch_size=8)
    return transformers.CLIPVisionModel(cfg), torch.randn(N, 3, 16, 16), ()


def _wav2vec2():
    cfg = transformers.Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        feat_extract_norm="layer", conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, do_stable_layer_norm=True)
    return (transformers.Wav2Vec2Model(cfg), torch.randn(N, 400),
            ("feature_extractor.", "encoder.pos_conv_embed."))


def _encodec():
    cfg = transformers.EncodecConfig(num_filters=4, hidden_size=16, codebook_size=16,
                                     upsampling_ratios=[2, 2], num_residual_layers=1,
                                     num_lstm_layers=1, audio_channels=1, codebook_dim=16,
                                     target_bandwidths=[3.2], sampling_rate=800)
    model = transformers.EncodecModel(cfg)
    return model, torch.randn(N, 1, 64), ("encoder.", "decoder.")


def _t5(flan: bool):
    cfg = transformers.T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=37, num_layers=1,
                                num_heads=2, feed_forward_proj="gated-gelu" if flan else "relu")
    batch = {"input_ids": torch.randint(0, 64, (N, 6)),
             "decoder_input_ids": torch.randint(0, 64, (N, 5))}
    return transformers.T5Model(cfg), batch, ()


def _bert():
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=37)
    return transformers.BertModel(cfg), torch.randint(0, 64, (N, 8)), ()


def _vit():
    cfg = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=37, image_size=16, patch_size=8)
    return transformers.ViTModel(cfg), torch.randn(N, 3, 16, 16), ()


def _convnext():
    cfg = transformers.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1],
                                      num_stages=2, image_size=32)
    return transformers.ConvNextModel(cfg), torch.randn(N, 3, 32, 32), ()


def _mobilenet():
    cfg = transformers.MobileNetV2Config(image_size=32, depth_multiplier=0.25,
                                         min_depth=4, num_channels=3)
    return transformers.MobileNetV2Model(cfg), torch.randn(N, 3, 32, 32), ("",)


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=37,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, max_position_embeddings=16)
    return transformers.LlamaModel(cfg), torch.randint(0, 64, (N, 8)), ()


ARCHS = {"gpt2": _gpt2, "clip_vision": _clip, "wav2vec2_layer": _wav2vec2, "encodec": _encodec,
         "t5": lambda: _t5(False), "flan_t5": lambda: _t5(True), "bert": _bert, "vit": _vit,
         "convnext": _convnext, "mobilenet_v2": _mobilenet, "llama": _llama}


@pytest.mark.parametrize("arch", list(ARCHS))
def test_counts_match_a_hook_reference_on_real_architectures(arch):
    torch.manual_seed(0)
    model, x, channel_paths = ARCHS[arch]()
    batches = [x] if isinstance(x, dict) else list(x.split(2))
    expected = reference(model, batches, channel_paths)
    assert expected, "the architecture has activation modules"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = deadrelu.scan(model, batches)
    names = {s.info.name: s for s in report.sites}
    for path, ref in expected.items():
        site = names[path]
        np.testing.assert_array_equal(site.stats.active.numpy(), ref["active"], err_msg=path)
        np.testing.assert_array_equal(site.stats.sample_active.numpy(), ref["sample_active"],
                                      err_msg=path)
        assert site.info.unit_axis_source == "known", path
    for name, site in names.items():
        owner = site.info.module
        assert not (site.info.kind in ("tanh", "sigmoid") and owner in expected
                    and class_name(type(model.get_submodule(owner))) in COMPOSITE_CLASSES), name
