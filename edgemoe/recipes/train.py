"""``edgemoe train --config CFG --data DIR --out CKPT``; under ``torchrun --nproc-per-node N -m
edgemoe train ...`` the same command trains one model with DDP over N processes."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import OUTPUT, progress, refuse_overwrite


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset directory: train/val .npz files, or a sharded dataset (dataset.json)")
    parser.add_argument("--out", type=Path, required=True,
                        help="checkpoint file to write (.safetensors); rewritten after every epoch")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint file")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--seed", type=int, default=None, help="override training.seed")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override training.batch_size: the per-process batch (global = this x processes)")
    parser.add_argument("--threads", type=int, default=None, help="override training.threads (per process)")
    parser.add_argument("--workers", type=int, default=0,
                        help="data loader processes per training process (0: read in the training process)")
    parser.add_argument("--resume", action="store_true", help="continue the run whose state --out holds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines stay)")
    parser.set_defaults(func=run, interrupted="a checkpoint is written to --out after every finished epoch; continue with --resume")


def run(args: argparse.Namespace) -> int:
    from edgemoe.core.schema import load_config
    from edgemoe.data.shards import open_any
    from edgemoe.train.checkpoint import save_checkpoint
    from edgemoe.train.distributed import Cluster
    from edgemoe.train.trainer import Trainer

    if not args.resume:
        refuse_overwrite(args.out, args.force)
    config = load_config(args.config)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed),
                                   ("batch_size", args.batch_size), ("threads", args.threads)) if v is not None}
    if overrides:
        config = config.model_copy(update={"training": config.training.model_copy(update=overrides)})
    data = open_any(args.data, config, ("train", "val"))
    cluster = Cluster.from_env()
    try:
        trainer = Trainer(config, log=progress, progress=not (args.no_progress or OUTPUT.quiet), cluster=cluster,
                          workers=args.workers, checkpoint=args.out)
        result = trainer.fit(data["train"], data["val"].to_split(), resume=args.resume)
        if cluster.is_main:
            save_checkpoint(result.model, args.out, {
                "best_epoch": result.best_epoch, "seed": config.training.seed,
                "history": result.history, "val_table": result.val_table.to_dict(),
            })
            print(f"best epoch {result.best_epoch}: val mean acc {result.val_table.mean['accuracy']:.4f}; "
                  f"wrote {args.out}")
    finally:
        cluster.close()
    return 0

