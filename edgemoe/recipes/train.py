"""``edgemoe train --config CFG --data DIR --out CKPT``."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgemoe.recipes.conventions import OUTPUT, progress, refuse_overwrite


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="model config (default: built-in robot4)")
    parser.add_argument("--data", type=Path, required=True, help="dataset directory (train/val/test .npz)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.safetensors)")
    parser.add_argument("--force", action="store_true", help="replace an existing checkpoint file")
    parser.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    parser.add_argument("--seed", type=int, default=None, help="override training.seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines stay)")
    parser.set_defaults(func=run, interrupted="no checkpoint was written; the epochs finished so far are lost")


def run(args: argparse.Namespace) -> int:
    from edgemoe.core.schema import load_config
    from edgemoe.data.dataset import load_dataset
    from edgemoe.train.checkpoint import save_checkpoint
    from edgemoe.train.trainer import Trainer

    refuse_overwrite(args.out, args.force)
    config = load_config(args.config)
    overrides = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    if overrides:
        config = config.model_copy(update={"training": config.training.model_copy(update=overrides)})
    data = load_dataset(args.data, config, ("train", "val"))
    trainer = Trainer(config, log=progress, progress=not (args.no_progress or OUTPUT.quiet))
    result = trainer.fit(data["train"], data["val"])
    save_checkpoint(result.model, args.out, {
        "best_epoch": result.best_epoch, "seed": config.training.seed,
        "history": result.history, "val_table": result.val_table.to_dict(),
    })
    print(f"best epoch {result.best_epoch}: val mean acc {result.val_table.mean['accuracy']:.4f}; wrote {args.out}")
    return 0
