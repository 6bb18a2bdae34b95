"""What a pre-training run records on rank 0: a CSV row per step (appended on resume),
TensorBoard scalars when it is installed, and the progress bar."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

LOG_FIELDS = [
    "step",
    "modality",
    "loss",
    "mae",
    "contrastive",
    "hog",
    "lr",
    "images_per_s",
    "batch_sum",
    "val_loss",
]


def step_seconds(rows: list[dict[str, str]], cfg: Any) -> list[float]:
    """Each logged step's duration (its source's batch size over its images/s): the log keeps
    rates, which a resumed run's rows share with the first run's."""
    batch = {
        ("hyperspectral" if s.modality == "auto" else s.modality): s.batch_size or cfg.batch_size
        for s in cfg.data
    }
    return [batch.get(r["modality"], cfg.batch_size) / float(r["images_per_s"]) for r in rows]


class TrainingLog:
    """Rank 0: a CSV row per step (appended on resume), and every ``every`` steps TensorBoard
    scalars (when installed) and the progress bar's loss and images/s."""

    def __init__(
        self, out: Path, rank: int, append: bool, quiet: bool, steps: int, start: int, every: int
    ):
        self.rank, self.every = rank, every
        if rank != 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        path = out / "log.csv"
        if append and path.exists():  # a killed run may have left half a line
            text = path.read_text()
            path.write_text(text[: text.rfind("\n") + 1])
        fields = LOG_FIELDS
        if append and path.exists():  # a log begun by an older version keeps its columns
            with open(path, newline="") as f:
                fields = next(csv.reader(f), None) or LOG_FIELDS
        self.file = open(path, "a" if append and path.exists() else "w", newline="")
        self.csv = csv.DictWriter(self.file, fieldnames=fields, extrasaction="ignore")
        if self.file.tell() == 0:
            self.csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            self.tb = None
        from tqdm.auto import tqdm  # a progress bar widget in a notebook

        self.bar = tqdm(
            total=steps,
            initial=start,
            disable=quiet,
            unit="step",
            desc="pre-training",
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def step(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        self.csv.writerow(row)
        self.file.flush()
        self.bar.update(1)
        if row["step"] % self.every:
            return
        if self.tb:
            self.tb.add_scalar("loss/train", row["loss"], row["step"])
            self.tb.add_scalar("lr", row["lr"], row["step"])
        self.bar.set_postfix(
            loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.0f}", mod=row["modality"]
        )

    def close(self, message: str) -> None:
        self.bar.close()
        self.file.close()
        if self.tb:
            self.tb.close()
        print(message, flush=True)
