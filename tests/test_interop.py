"""Weights from Keras, ONNX and haste layouts give those frameworks' outputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from onnx_node import onnx_lstm

import lstmkit
from lstmkit.interop import load_haste, load_keras, load_onnx

R = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return (R.standard_normal(shape) * 0.3).astype(np.float32)


def test_keras_lstm_outputs() -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    I, H, B, T = 3, 5, 2, 6
    layer = keras.layers.LSTM(H, return_sequences=True, return_state=True)
    x = rand(B, T, I)
    layer(x)  # builds the weights
    weights = [rand(I, 4 * H), rand(H, 4 * H), rand(4 * H)]
    layer.set_weights(weights)
    y, h, c = (np.asarray(keras.ops.convert_to_numpy(t)) for t in layer(x))
    lstm = lstmkit.LSTM(I, H, batch_first=True)
    load_keras(lstm, *map(torch.from_numpy, weights))
    with torch.no_grad():
        out, (h_n, c_n) = lstm(torch.from_numpy(x))
    for got, want in ((out, y), (h_n[0], h), (c_n[0], c)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_onnx_lstm_node_outputs() -> None:
    I, H, B, T, D = 3, 4, 2, 5, 2
    x, W, R_, Bias = rand(T, B, I), rand(D, 4 * H, I), rand(D, 4 * H, H), rand(D, 8 * H)
    y, y_h, y_c = onnx_lstm(x, W, R_, Bias)  # Y: (T, D, B, H)
    lstm = lstmkit.LSTM(I, H, bidirectional=True)
    load_onnx(lstm, W, R_, Bias)
    with torch.no_grad():
        out, (h_n, c_n) = lstm(torch.from_numpy(x))
    expected = torch.from_numpy(y).permute(0, 2, 1, 3).reshape(T, B, D * H)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(h_n, torch.from_numpy(y_h), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_n, torch.from_numpy(y_c), rtol=1e-5, atol=1e-5)


def haste_by_equations(x, kernel, rkernel, bias, norm=None):
    """haste's LSTM, or its LayerNormLSTM with ``norm = (gamma, gamma_h, beta_h)``, in
    numpy: ``(h_n, c_n)``. Gates i, g, f, o; LN over the last axis, eps 1e-5."""

    def ln(v, g, b=0.0):
        mean, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mean) / np.sqrt(var + 1e-5) * g + b

    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    B, H = x.shape[1], rkernel.shape[0]
    h = c = np.zeros((B, H), np.float64)
    for x_t in x:
        wx, rh = x_t @ kernel, h @ rkernel
        z = (wx + rh if norm is None else ln(wx, norm[0][0]) + ln(rh, norm[0][1])) + bias
        zi, zg, zf, zo = np.split(z, 4, axis=1)
        i, g, f, o = sig(zi), np.tanh(zg), sig(zf), sig(zo)
        c = f * c + i * g
        h = o * np.tanh(c if norm is None else ln(c, norm[1], norm[2]))
    return h, c


def test_haste_layout_by_its_equations() -> None:
    """haste: kernel (I, 4H) and recurrent_kernel (H, 4H), gates i, g, f, o, one bias."""
    I, H, B, T = 3, 4, 2, 5
    kernel, rkernel, bias = rand(I, 4 * H), rand(H, 4 * H), rand(4 * H)
    x = rand(T, B, I)
    h, c = haste_by_equations(x, kernel, rkernel, bias)
    lstm = lstmkit.LSTM(I, H)
    load_haste(lstm, torch.from_numpy(kernel), torch.from_numpy(rkernel), torch.from_numpy(bias))
    with torch.no_grad():
        _, (h_n, c_n) = lstm(torch.from_numpy(x))
    np.testing.assert_allclose(h_n[0].numpy(), h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c_n[0].numpy(), c, rtol=1e-5, atol=1e-5)


def test_haste_layer_norm_lstm_by_its_equations() -> None:
    """haste's LayerNormLSTM: LN(x kernel) gamma[0] + LN(h recurrent_kernel) gamma[1] + bias,
    h = o tanh(LN(c) gamma_h + beta_h), gates i, g, f, o, eps 1e-5."""
    I, H, B, T = 3, 4, 2, 5
    f64 = [rand(*s).astype(np.float64) for s in ((I, 4 * H), (H, 4 * H), (4 * H,), (T, B, I))]
    kernel, rkernel, bias, x = f64
    gamma, gamma_h, beta_h = (rand(*s).astype(np.float64) for s in ((2, 4 * H), (H,), (H,)))
    gamma, gamma_h = 1 + 0.3 * gamma, 1 + 0.3 * gamma_h
    h, c = haste_by_equations(x, kernel, rkernel, bias, (gamma, gamma_h, beta_h))
    lstm = lstmkit.LSTM(I, H, layer_norm=True, dtype=torch.float64)
    t = torch.from_numpy
    load_haste(lstm, t(kernel), t(rkernel), t(bias), gamma=t(gamma), gamma_h=t(gamma_h),
               beta_h=t(beta_h))  # fmt: skip
    with torch.no_grad():
        _, (h_n, c_n) = lstm(t(x))
    np.testing.assert_allclose(h_n[0].numpy(), h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c_n[0].numpy(), c, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="exactly when the LSTM has layer_norm=True"):
        load_haste(lstmkit.LSTM(I, H), t(kernel), t(rkernel), t(bias), gamma=t(gamma))
    with pytest.raises(ValueError, match="exactly when the LSTM has layer_norm=True"):
        load_haste(lstm, t(kernel), t(rkernel), t(bias))


def test_loaders_refuse_mismatches() -> None:
    with pytest.raises(ValueError, match=r"weight_ih_l0: expected shape \(16, 3\)"):
        load_keras(lstmkit.LSTM(3, 4), torch.zeros(5, 16), torch.zeros(4, 16), torch.zeros(16))
    with pytest.raises(ValueError, match="W has 1 directions, the LSTM has 2"):
        load_onnx(lstmkit.LSTM(3, 4, bidirectional=True), rand(1, 16, 3), rand(1, 16, 4))
    with pytest.raises(ValueError, match="pass the source's bias"):
        load_haste(lstmkit.LSTM(3, 4), torch.zeros(3, 16), torch.zeros(4, 16))
    with pytest.raises(ValueError, match=r"layer must be in \[0, 1\), got 1"):
        load_keras(lstmkit.LSTM(3, 4), torch.zeros(3, 16), torch.zeros(4, 16), layer=1)
