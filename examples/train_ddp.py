"""Train a model built on lstmkit.LSTM with DistributedDataParallel (gloo, CPU).

One machine, two processes:

    torchrun --standalone --nproc_per_node=2 examples/train_ddp.py --steps 50

Several machines (run on each; node 0's address and a free port as the rendezvous):

    torchrun --nnodes=2 --node_rank=<0 or 1> --nproc_per_node=2 \\
        --rdzv_backend=c10d --rdzv_endpoint=<node0-host>:29500 examples/train_ddp.py

The task: from a noisy sine wave of T steps, predict the next value. Each process trains on
its own shard of every batch; DDP averages the gradients, so every step equals one step on
the whole batch in a single process. Rank 0 writes the checkpoint (``--out``).
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lstmkit


class Forecaster(nn.Module):
    """lstmkit.LSTM over the sequence, a linear head on the last step's output."""

    def __init__(self, hidden: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.lstm = lstmkit.LSTM(1, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 1) -> (B,)
        out, _ = self.lstm(x)
        return self.head(out[:, -1]).squeeze(-1)


def batch(step: int, size: int, steps: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole batch of training step ``step`` (the same on every process)."""
    g = torch.Generator().manual_seed(1000 + step)
    phase = torch.rand(size, 1, generator=g) * 6.28
    t = torch.arange(steps + 1) * 0.3
    wave = torch.sin(t + phase) + 0.05 * torch.randn(size, steps + 1, generator=g)
    return wave[:, :-1, None], wave[:, -1]


def shard(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    return x.chunk(world)[rank]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32, help="whole batch, split over ranks")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--out", default="forecaster.pt", help="rank 0's checkpoint")
    parser.add_argument("--dump-first-grads", help="rank 0 saves the first step's gradients")
    args = parser.parse_args()

    torch.set_num_threads(1)  # one core per process
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch % world:
        raise SystemExit(f"--batch ({args.batch}) must be divisible by the world size ({world})")
    torch.manual_seed(0)  # the same initial weights on every rank (DDP also broadcasts them)
    model = DistributedDataParallel(Forecaster())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    for step in range(args.steps):
        x, y = batch(step, args.batch)
        loss = nn.functional.mse_loss(model(shard(x, rank, world)), shard(y, rank, world))
        optimizer.zero_grad()
        loss.backward()  # DDP all-reduces (averages) the gradients here
        if step == 0 and rank == 0 and args.dump_first_grads:
            grads = {n: p.grad.clone() for n, p in model.module.named_parameters()}
            torch.save(grads, args.dump_first_grads)
        optimizer.step()
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}  ({world} processes)", flush=True)
    if rank == 0:
        probe, _ = batch(-1, 8)
        with torch.no_grad():
            torch.save(
                {
                    "model": model.module.state_dict(),
                    "probe": probe,
                    "probe_out": model.module(probe),
                },
                args.out,
            )
        print(f"saved {args.out}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__" and "RANK" in os.environ:
    main()
elif __name__ == "__main__":
    raise SystemExit(
        "launch with torchrun, e.g. torchrun --standalone --nproc_per_node=2 examples/train_ddp.py"
    )
