"""The unit-axis rules of deadrelu.layout, one op per row.

Each row: an op as the collector sees it (name, arguments after the input, input
shape, output shape), the input's unit dim, and where the unit dim must be after
the op (None: lost). The shapes are what torch gives for that call, checked by
running the op on a tensor of the input shape.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deadrelu import layout
from deadrelu.layout import AxisSource

N, C, T = 2, 5, 7

ROWS = [
    # op, tensor op (for the shape check), args after the input, kwargs, in shape, unit, expected
    ("transpose", lambda x: x.transpose(1, 2), (1, 2), {}, (N, C, T), 1, 2),
    ("transpose", lambda x: x.transpose(-1, -2), (-1, -2), {}, (N, C, T), 1, 2),
    ("transpose", lambda x: x.transpose(0, 2), (0, 2), {}, (N, C, T), 1, 1),
    ("transpose", lambda x: x.transpose(dim0=1, dim1=2), (), {"dim0": 1, "dim1": 2}, (N, C, T), 2, 1),
    ("swapaxes", lambda x: x.swapaxes(1, 2), (1, 2), {}, (N, C, T), 1, 2),
    ("swapdims", lambda x: x.swapdims(2, 1), (2, 1), {}, (N, C, T), 2, 1),
    ("permute", lambda x: x.permute(0, 2, 3, 1), (0, 2, 3, 1), {}, (N, C, 3, 4), 1, 3),
    ("permute", lambda x: x.permute((0, 3, 1, 2)), ((0, 3, 1, 2),), {}, (N, 3, 4, C), 3, 1),
    ("permute", lambda x: torch.permute(x, dims=(2, 0, 1)), (), {"dims": (2, 0, 1)}, (N, C, T), 1, 2),
    ("permute", lambda x: x.permute(1, 2, 0), (1, 2, 0), {}, (T, N, C), 2, 1),
    ("movedim", lambda x: x.movedim(1, -1), (1, -1), {}, (N, C, 3, 4), 1, 3),
    ("movedim", lambda x: x.movedim(-1, 1), (-1, 1), {}, (N, 3, 4, C), 3, 1),
    ("movedim", lambda x: x.movedim((1, 2), (2, 1)), ((1, 2), (2, 1)), {}, (N, C, T), 1, 2),
    ("moveaxis", lambda x: x.moveaxis(0, 2), (0, 2), {}, (N, C, T), 1, 0),
    ("mT", lambda x: x.mT, (), {}, (N, C, T), 1, 2),
    ("mT", lambda x: x.mT, (), {}, (N, T, C), 2, 1),
    ("mT", lambda x: x.mT, (), {}, (N, C, 3, 4), 1, 1),
    ("t", lambda x: x.t(), (), {}, (N, C), 1, 0),
    ("contiguous", lambda x: x.contiguous(), (), {}, (N, C, T), 1, 1),
    ("view", lambda x: x.view(N, C, -1), (N, C, -1), {}, (N, C, 3, 4), 1, 1),
    ("view", lambda x: x.view(N, -1), (N, -1), {}, (N, C, 3, 4), 1, None),
    ("reshape", lambda x: x.reshape(N, 12, C), (N, 12, C), {}, (N, 3, 4, C), 3, 2),
    ("reshape", lambda x: x.reshape(N * T, C), (N * T, C), {}, (N, T, C), 2, 1),
    ("reshape", lambda x: x.reshape(N, T, C, 1), (N, T, C, 1), {}, (N, T, C), 2, 2),
    ("reshape", lambda x: x.reshape(N, 6, -1), (N, 6, -1), {}, (N, 4, 6, 6), 1, None),
    ("view", lambda x: x.view(N, T, 5, 2), (N, T, 5, 2), {}, (N, T, 10), 2, None),  # heads split
    ("flatten", lambda x: x.flatten(2), (2,), {}, (N, C, 3, 4), 1, 1),
    ("flatten", lambda x: x.flatten(1), (1,), {}, (N, C, 3, 4), 1, None),
    ("unflatten", lambda x: x.unflatten(2, (3, 4)), (2, (3, 4)), {}, (N, C, 12), 1, 1),
    ("unsqueeze", lambda x: x.unsqueeze(1), (1,), {}, (N, C, T), 1, 2),
    ("squeeze", lambda x: x.squeeze(2), (2,), {}, (N, C, 1, T), 1, 1),
    ("stack", None, (1,), {}, (N, C, T), 1, 2),
    ("stack", None, (3,), {}, (N, C, T), 1, 1),
    ("stack", None, (), {"dim": -1}, (N, C, T), 2, 2),
    ("cat", None, (2,), {}, (N, C, T), 1, 1),
    ("chunk", lambda x: x.chunk(2, 2)[0], (2, 2), {}, (N, C, 8), 1, 1),
    ("split", lambda x: x.split(2, 1)[0], (2, 1), {}, (N, T, 4), 2, 2),
    ("chunk", lambda x: x.chunk(2, -1)[0], (2, -1), {}, (N, T, 8), 2, 2),  # GLU: half the units
    ("unbind", lambda x: x.unbind(2)[0], (2,), {}, (N, C, T), 1, 1),
    ("unbind", lambda x: x.unbind(1)[0], (1,), {}, (N, C, T), 1, None),
    ("select", lambda x: x.select(1, 0), (1, 0), {}, (N, T, C), 2, 1),
    ("__getitem__", lambda x: x[:, None], ((slice(None), None),), {}, (N, C, T), 1, 2),
    ("__getitem__", lambda x: x[:, :, 0], ((slice(None), slice(None), 0),), {}, (N, C, 3, 4), 1, 1),
    ("__getitem__", lambda x: x[..., 0], ((Ellipsis, 0),), {}, (N, T, C), 2, None),
    ("__getitem__", lambda x: x[..., 1:], ((Ellipsis, slice(1, None)),), {}, (N, C, T), 1, 1),
    ("__getitem__", lambda x: x[0], (0,), {}, (N, C, T), 1, 0),
    ("mean", lambda x: x.mean(-1), (-1,), {}, (N, C, T), 1, 1),
    ("mean", lambda x: x.mean(1), (1,), {}, (N, C, T), 1, None),
    ("sum", lambda x: x.sum((2, 3), keepdim=True), ((2, 3),), {"keepdim": True}, (N, C, 3, 4), 1, 1),
    ("amax", lambda x: x.amax(dim=1), (), {"dim": 1}, (N, T, C), 2, 1),
    ("matmul", lambda x: x @ torch.ones(T, 3), (None,), {}, (N, C, T), 1, None),
    ("__mul__", lambda x: x * 2.0, (2.0,), {}, (N, C, T), 1, 1),
    ("dropout", lambda x: torch.nn.functional.dropout(x, 0.1), (0.1,), {}, (N, C, T), 1, 1),
    ("pad", lambda x: torch.nn.functional.pad(x, (1, 1)), ((1, 1),), {}, (N, C, T), 1, 1),
    ("interpolate", lambda x: torch.nn.functional.interpolate(x, scale_factor=2.0), (), {},
     (N, C, T), 1, 1),
]


def _out_shape(op, fn, args, kwargs, shape):
    x = torch.randn(shape)
    if op == "stack":
        return tuple(torch.stack([x, x], *args, **kwargs).shape)
    if op == "cat":
        return tuple(torch.cat([x, x], *args, **kwargs).shape)
    return tuple(fn(x).shape)


@pytest.mark.parametrize("op, fn, args, kwargs, shape, unit, expected", ROWS,
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_each_op_moves_keeps_or_loses_the_unit_dim(op, fn, args, kwargs, shape, unit, expected):
    out_shape = _out_shape(op, fn, args, kwargs, shape)
    got = layout.follow(op, (object(), *args), kwargs, unit, shape, out_shape)
    assert got == expected
    if expected is not None and op != "chunk":  # the same units really are there
        assert out_shape[expected] == shape[unit]


def test_round_trips_return_to_the_start():
    shape, unit = (N, C, 3, 4), 1
    there = layout.follow("permute", (None, 0, 2, 3, 1), {}, unit, shape, (N, 3, 4, C))
    back = layout.follow("permute", (None, 0, 3, 1, 2), {}, there, (N, 3, 4, C), shape)
    assert (there, back) == (3, 1)
    s3 = (N, C, T)
    u = 1
    for _ in range(2):  # a double round trip, by transpose and by mT
        u = layout.follow("transpose", (None, 1, 2), {}, u, s3, (N, T, C))
        u = layout.follow("mT", (None,), {}, u, (N, T, C), s3)
    assert u == 1


def test_broadcast_operand_second_and_of_fewer_dims():
    # gain (C, 1) * conv output (N, C, T): the layout rides on the second operand
    assert layout.follow("__mul__", (None, None), {}, 1, (N, C, T), (N, C, T), first=False) == 1
    # a (C, T) tensor broadcast against (N, C, T): its dims align at the end
    assert layout.follow("__add__", (None, None), {}, 0, (C, T), (N, C, T), first=False) == 1


@pytest.mark.parametrize("name, in_layout, ndim, expected", [
    ("conv1d", None, 3, 1), ("conv2d", 3, 4, 1), ("linear", 1, 3, 2),
    ("layer_norm", None, 3, 2), ("layer_norm", 2, 3, 2), ("layer_norm", 1, 3, 1),
    ("group_norm", None, 3, 1), ("group_norm", 1, 3, 1), ("rms_norm", 2, 3, 2),
    ("relu", None, 3, None),
])
def test_layers_set_the_layout_and_normalizations_keep_a_known_one(name, in_layout, ndim,
                                                                    expected):
    assert layout.produced(name, in_layout, ndim) == expected


def test_a_product_with_a_weight_matrix_is_a_linear_written_out():
    w, x3 = torch.ones(4, 6), torch.ones(2, 3, 4)
    assert layout.produced("addmm", None, 2, (torch.ones(6), torch.ones(5, 4), w)) == 1
    assert layout.produced("matmul", 1, 3, (x3, w)) == 2
    assert layout.produced("matmul", 1, 3, (x3, torch.ones(2, 4, 6))) is None  # batched: mixed


def test_module_layouts():
    assert layout.module_layout(nn.Conv1d(2, 3, 1), None, 3) == 1
    assert layout.module_layout(nn.LayerNorm(4), None, 3) == 2
    assert layout.module_layout(nn.LayerNorm(4), 1, 3) == 1
    assert layout.module_layout(nn.GroupNorm(1, 4), None, 3) == 1
    assert layout.module_layout(nn.LSTM(3, 4), None, 3) == 2
    assert layout.module_layout(nn.Identity(), None, 3) is None


@pytest.mark.parametrize("ndim, known, producer, expected", [
    (2, None, None, (1, AxisSource.KNOWN)),
    (1, None, None, (0, AxisSource.KNOWN)),
    (3, 1, None, (1, AxisSource.KNOWN)),
    (3, None, None, (2, AxisSource.GUESSED)),   # (N, T, C) sequences: features last
    (4, None, None, (1, AxisSource.GUESSED)),   # images: channels
    (3, layout.LOST, nn.Conv1d(1, 1, 1), (2, AxisSource.GUESSED)),  # lost: the producer is moot
    (3, None, nn.Conv1d(1, 1, 1), (1, AxisSource.KNOWN)),
])
def test_unit_axis_default_rule_and_its_source(ndim, known, producer, expected):
    assert layout.unit_axis(ndim, known, producer) == expected


def test_op_name_reads_properties():
    seen = []

    class Spy(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(layout.op_name(func))
            return func(*args, **(kwargs or {}))

    with Spy():
        torch.randn(2, 3, 4).mT  # noqa: B018
    assert "mT" in seen
