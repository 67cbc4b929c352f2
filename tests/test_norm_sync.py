"""norm=syncbn (the layer conf/norm/syncbn.yaml builds) across two CPU processes (gloo) equals BN on the
union of their batches: outputs, input gradients through the global statistics, summed parameter
gradients, and the running statistics every rank keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hydra.utils import instantiate
from omegaconf import OmegaConf

from .conftest import CONF

WORLD = 2
CHANNELS = 3


def full_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The union of both processes' batches, an upstream gradient, and the affine γ, β."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, CHANNELS, 3, 3, generator=generator, dtype=torch.float64) * 2 + 1
    x[4:] = x[4:] * 3 - 2  # the two halves have different statistics
    upstream = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    gamma = torch.rand(CHANNELS, generator=generator, dtype=torch.float64) + 0.5
    beta = torch.rand(CHANNELS, generator=generator, dtype=torch.float64) - 0.5
    return x, upstream, gamma, beta


def _worker(rank: int, init_file: str, out_dir: str, layer_config: dict) -> None:
    torch.set_num_threads(1)
    # a file store, not tcp://: no store server thread in rank 0 and no port to race for
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x, upstream, gamma, beta = full_batch()
        part = slice(rank * 4, (rank + 1) * 4)
        layer = instantiate(layer_config)(CHANNELS).double()
        with torch.no_grad():
            layer.weight.copy_(gamma)
            layer.bias.copy_(beta)
        local = x[part].clone().requires_grad_(True)
        y = layer(local)
        (y * upstream[part]).sum().backward()
        torch.save(
            {
                "y": y.detach(),
                "x_grad": local.grad,
                "weight_grad": layer.weight.grad,
                "running_mean": layer.running_mean,
                "running_var": layer.running_var,
                "type": type(layer).__name__,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
        # no rank tears gloo down while the other still talks to it (that aborts the other process)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_sync_batch_norm_over_two_cpu_processes_is_batch_norm_over_both_batches(tmp_path: Path):
    layer_config = OmegaConf.to_container(OmegaConf.load(CONF / "norm" / "syncbn.yaml").layer)
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path), layer_config), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    assert {r["type"] for r in ranks} == {"SyncBatchNorm2d"}

    x, upstream, gamma, beta = full_batch()
    for half in x.chunk(WORLD):  # the test can tell: each rank's own images have other statistics
        assert not torch.allclose(half.mean(dim=(0, 2, 3)), x.mean(dim=(0, 2, 3)), atol=1e-2)
    x = x.clone().requires_grad_(True)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    weight = gamma.clone().requires_grad_(True)
    y = (x - mean) / torch.sqrt(var + 1e-5) * weight.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)
    (y * upstream).sum().backward()

    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    torch.testing.assert_close(torch.cat([r["x_grad"] for r in ranks]), x.grad)  # through the other half too
    torch.testing.assert_close(sum(r["weight_grad"] for r in ranks), weight.grad)  # DDP sums (averages) these
    for r in ranks:
        torch.testing.assert_close(r["running_mean"], 0.1 * mean.detach().flatten())
        torch.testing.assert_close(r["running_var"], 0.9 + 0.1 * x.detach().var(dim=(0, 2, 3), unbiased=True))
