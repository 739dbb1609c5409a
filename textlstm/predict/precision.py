"""The precision a prediction runs in: as the run was trained (``auto``), fp32, bf16 where the
hardware has native bfloat16, or PyTorch's dynamic int8 quantization. Training's precision is
checked in ``runtime`` (fp16 needs a GPU); this is the inference side's policy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textlstm.errors import TextLSTMError, param

if TYPE_CHECKING:
    from textlstm.model.classifier import LSTMClassifier

PRECISIONS = ("auto", "fp32", "bf16")
QUANTIZE = ("int8",)


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise TextLSTMError(f"{param('precision', name)}: use one of {', '.join(PRECISIONS)}")
    return name


def check_quantize(name: str | None) -> str | None:
    if name is not None and name not in QUANTIZE:
        raise TextLSTMError(f"{param('quantize', name)}: use {' or '.join(QUANTIZE)}")
    return name


def inference_mode(
    precision: str, quantize: str | None, trained: str, bf16: str = "native", gpu: bool = False
) -> str:
    """What a model runs in: ``fp32``, ``bf16``, ``fp16`` or ``int8``. ``auto`` is the precision
    the run was trained in (its recipe's ``train.precision``), except that bf16 becomes fp32 where
    the hardware has no native bf16 (``bf16`` is ``runtime.bf16_support``: emulated bf16 is slower
    than fp32, and a CPU without AVX-512 has no bf16 recurrent kernel at all), and fp16 becomes
    fp32 off a GPU."""
    check_precision(precision)
    if check_quantize(quantize) is None:
        if precision == "auto":
            if trained == "fp16":
                return "fp16" if gpu else "fp32"
            return "fp32" if trained == "bf16" and bf16 != "native" else trained
        if precision == "bf16" and bf16 == "none":
            raise TextLSTMError(
                f"{param('precision', 'bf16')}: this CPU has no bfloat16 kernels "
                "for the LSTM and GRU (they need AVX-512 or AMX); use "
                f"{param('precision', 'fp32')} or auto"
            )
        return precision
    if precision == "bf16":
        raise TextLSTMError(
            f"{param('quantize', 'int8')} runs int8 weights with fp32 "
            f"activations; drop {param('precision', 'bf16')} (or drop "
            f"{param('quantize')} for bf16)"
        )
    return "int8"


def quantize_int8(model: LSTMClassifier) -> LSTMClassifier:
    """PyTorch's dynamic quantization: the LSTM/GRU and linear weights become int8, activations
    are quantized on the fly. CPU only. (``torch.ao.quantization`` warns that it will move to
    torchao; the warning is not the user's to act on, so it is silenced.)"""
    import warnings

    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(model.cpu().eval(), {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8)
