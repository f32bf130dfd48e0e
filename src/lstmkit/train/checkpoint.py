"""Checkpoints of ``lstmkit train``: weights in safetensors, the rest in a small JSON.

A checkpoint is a directory with two files:

* ``checkpoint.safetensors``: the model's tensors (``model.<name>``), the optimizer's
  per-parameter state (``optim.<index>.<key>``) and torch's RNG state (``rng.torch``,
  so dropout and the options' masks continue exactly where they stopped);
* ``checkpoint.json``: the format, the run's configuration, the epoch and optimizer
  step reached, the optimizer's hyper-parameters, the history so far, and the SHA-256
  of the safetensors file.

Loading checks everything before touching the model: both files present and readable,
the checksum, the configuration equal to the run's (all but ``epochs``), every tensor
name and shape. Any failure raises :class:`CheckpointError` saying what is wrong; nothing
is loaded partially.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "lstmkit-train/1"
WEIGHTS, META = "checkpoint.safetensors", "checkpoint.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed: missing, corrupt, or for another run."""


@dataclass
class Resumed:
    """What a loaded checkpoint hands back to the training loop."""

    epoch: int
    step: int
    history: list[dict[str, float]]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save(
    directory: Path, config: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
    epoch: int, step: int, history: list[dict[str, float]],
) -> None:  # fmt: skip
    """Write the checkpoint of ``epoch`` into ``directory`` (each file replaced atomically)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    state = optimizer.state_dict()
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    weights = directory / WEIGHTS
    save_file(tensors, str(weights) + ".tmp")
    os.replace(str(weights) + ".tmp", weights)
    meta = {
        "format": FORMAT, "config": config, "epoch": epoch, "optimizer_step": step,
        "param_groups": state["param_groups"], "history": history, "sha256": _sha256(weights),
    }  # fmt: skip
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, directory / META)


def exists(directory: Path) -> bool:
    """Whether ``directory`` holds (part of) a checkpoint that a new run would overwrite."""
    return (directory / WEIGHTS).exists() or (directory / META).exists()


def check(directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """The metadata of the checkpoint in ``directory`` if ``config`` can resume from it:
    both files present, the JSON of this format, the checksum, the configuration and the
    epoch reached; :class:`CheckpointError` otherwise. Reads no tensors."""
    weights, meta_path = directory / WEIGHTS, directory / META
    missing = [p.name for p in (weights, meta_path) if not p.is_file()]
    if missing:
        raise CheckpointError(f"no checkpoint in {directory}: missing {', '.join(missing)}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{meta_path} is not valid JSON ({err}): the file is corrupt"
        ) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an lstmkit train checkpoint ({FORMAT})")
    if meta.get("sha256") != _sha256(weights):
        raise CheckpointError(
            f"{weights} does not match the checksum in {meta_path.name}: the file is corrupt "
            "or was replaced"
        )
    _check_config(meta.get("config", {}), config, directory)
    if meta["epoch"] > config["epochs"]:
        raise CheckpointError(
            f"the checkpoint in {directory} has already trained {meta['epoch']} epochs; "
            f"--epochs {config['epochs']} asks for fewer"
        )
    return meta


def load(
    directory: Path, config: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> Resumed:
    """Restore ``model``, ``optimizer`` and torch's RNG from ``directory``; see the module
    docstring for what is checked."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    meta = check(directory, config)
    weights = directory / WEIGHTS
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights} cannot be read ({err}): the file is corrupt") from err
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    _check_tensors(model_state, model.state_dict(), weights)
    optim_state = _optimizer_state(tensors, meta["param_groups"])
    model.load_state_dict(model_state)
    optimizer.load_state_dict(optim_state)
    torch.set_rng_state(tensors["rng.torch"])
    return Resumed(meta["epoch"], meta["optimizer_step"], meta["history"])


def _check_config(saved: dict[str, Any], wanted: dict[str, Any], directory: Path) -> None:
    """The checkpoint must come from the same configuration (``epochs`` may grow)."""
    keys = sorted((set(saved) | set(wanted)) - {"epochs"})
    differ = [k for k in keys if saved.get(k) != wanted.get(k)]
    if differ:
        detail = "; ".join(
            f"{k}: checkpoint {saved.get(k)!r}, this run {wanted.get(k)!r}" for k in differ
        )
        raise CheckpointError(
            f"the checkpoint in {directory} is for another configuration ({detail})"
        )


def _check_tensors(saved: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                   path: Path) -> None:  # fmt: skip
    """Every model tensor present with its shape, and nothing else."""
    problems = [f"missing {k}" for k in expected if k not in saved]
    problems += [f"unexpected {k}" for k in saved if k not in expected]
    problems += [
        f"{k} has shape {tuple(saved[k].shape)}, the model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in saved and saved[k].shape != v.shape
    ]
    if problems:
        raise CheckpointError(f"{path} does not fit this model: {'; '.join(problems[:5])}")


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}
