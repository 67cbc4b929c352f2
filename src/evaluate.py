"""Re-evaluate a run's kept model without retraining: ``python -m src.evaluate <run_dir> [options]``.

A run trained with ``save_weights=final`` (or ``best``) keeps ``<run dir>/model.pt``. This rebuilds the
run's network from the resolved config in its ``result.json`` (dataset, norm, model, as
:func:`src.training.experiment.build_experiment` does), loads the weights, and measures the test error and the
error of each class; ``--recompute-bn`` first re-estimates the running statistics of every BatchNorm
layer from training batches (the weights unchanged), which shows how much of BN's test error at a
small batch comes from its running estimates. Each evaluation is appended to the record's
``evaluations`` list (the training metrics are left as they are).

Options: ``--split test|val``, ``--recompute-bn``, ``--bn-batches N`` (training batches for the
statistics; default all of one epoch), ``--bn-batch-size B`` (default the run's batch), ``--device``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from src.run.records import RECORD_FILE, load_record, write_record
from src.training.callbacks import WEIGHTS_FILE

SPLITS = ("test", "val")


def build_network(config: dict[str, Any]) -> tuple[Any, nn.Module]:
    """The run's datamodule (set up) and its untrained network, built as training built them."""
    from src.norms import standardize_convolutions
    from src.training.experiment import build

    cfg = OmegaConf.create(config)
    datamodule = build(cfg.dataset)
    datamodule.setup("fit")
    datamodule.setup("test")
    norm = build(cfg.norm)
    net = build(cfg.model, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes, norm=norm)
    norm.apply_weight(net)
    if cfg.get("standardize_weights", False):
        standardize_convolutions(net)
    return datamodule, net


def _batches(datamodule: Any, loader: Any, device: torch.device) -> Any:
    for images, labels in loader:
        yield datamodule.on_after_batch_transfer([images.to(device), labels.to(device)], 0)


def recompute_bn(net: nn.Module, datamodule: Any, device: torch.device, batches: int | None) -> int:
    """Reset every BatchNorm layer's running statistics and re-estimate them (a cumulative average)
    from ``batches`` training batches (``None``: one epoch); returns the number of layers."""
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = {layer: layer.momentum for layer in layers}
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative moving average over the batches seen
    net.train()
    with torch.no_grad():
        for index, (images, _) in enumerate(_batches(datamodule, datamodule.train_dataloader(), device)):
            if batches is not None and index >= batches:
                break
            net(images)
    for layer, momentum in momenta.items():
        layer.momentum = momentum
    return len(layers)


def errors(net: nn.Module, datamodule: Any, split: str, device: torch.device) -> dict[str, Any]:
    """Error (%) of ``net`` on ``split`` overall and per class, and the number of images."""
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    classes = int(datamodule.num_classes)
    wrong, total = torch.zeros(classes, dtype=torch.long), torch.zeros(classes, dtype=torch.long)
    net.eval()
    with torch.no_grad():
        for images, labels in _batches(datamodule, loader, device):
            predicted = net(images).argmax(dim=1)
            labels = labels.long().cpu()
            total += torch.bincount(labels, minlength=classes)
            wrong += torch.bincount(labels[predicted.cpu() != labels], minlength=classes)
    per_class = [round(100.0 * w / t, 4) if t else None for w, t in zip(wrong.tolist(), total.tolist(), strict=True)]
    return {
        f"{split}_error": 100.0 * wrong.sum().item() / max(total.sum().item(), 1),
        "per_class_error": per_class,
        "images": int(total.sum().item()),
    }


def evaluate(
    run_dir: Path,
    split: str = "test",
    recompute: bool = False,
    bn_batches: int | None = None,
    bn_batch_size: int | None = None,
    device: str = "cpu",
    append: bool = True,
) -> dict[str, Any]:
    """Evaluate the model kept in ``run_dir``; append the result to its record (``append``) and return it."""
    from src.run.resume import run_lock

    run_dir = Path(run_dir)
    weights = run_dir / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no kept model (train with save_weights=final or save_weights=best)")
    record = load_record(run_dir / RECORD_FILE)
    config = dict(record.config)
    if bn_batch_size:
        config = {**config, "dataset": {**config["dataset"], "batch_size": int(bn_batch_size)}}
    torch.manual_seed(int(record.seed or 0))
    datamodule, net = build_network(config)
    saved = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(saved["state_dict"])
    target = torch.device(device)
    net.to(target)
    result: dict[str, Any] = {
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "weights": {"file": WEIGHTS_FILE, "which": saved.get("which"), "epoch": saved.get("epoch")},
        "split": split,
        "recompute_bn": recompute,
    }
    if recompute:
        result["bn_layers"] = recompute_bn(net, datamodule, target, bn_batches)
        result["bn_batch_size"] = int(config["dataset"].get("batch_size") or 0)
        result["bn_batches"] = bn_batches
    result.update(errors(net, datamodule, split, target))
    if append:
        with run_lock(run_dir):
            current = load_record(run_dir / RECORD_FILE)
            current.evaluations.append(result)
            write_record(run_dir, current)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory holding result.json and model.pt")
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--recompute-bn", action="store_true", help="re-estimate BN running statistics first")
    parser.add_argument("--bn-batches", type=int, default=None, help="training batches for them (default: one epoch)")
    parser.add_argument("--bn-batch-size", type=int, default=None, help="their batch size (default: the run's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-append", action="store_true", help="print only; leave result.json as it is")
    args = parser.parse_args(argv)
    try:
        result = evaluate(
            args.run_dir,
            args.split,
            args.recompute_bn,
            args.bn_batches,
            args.bn_batch_size,
            args.device,
            append=not args.no_append,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    record = load_record(args.run_dir / RECORD_FILE)
    recorded = record.metrics.get(f"{args.split}_error")
    bn = " with recomputed BN statistics" if args.recompute_bn else ""
    recorded_text = f"{recorded:.2f}%" if isinstance(recorded, int | float) else "none"
    print(f"{args.run_dir}: {args.split} error {result[f'{args.split}_error']:.2f}%{bn} (recorded: {recorded_text})")
    print("per class:", ", ".join(f"{i}: {e}" for i, e in enumerate(result["per_class_error"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
