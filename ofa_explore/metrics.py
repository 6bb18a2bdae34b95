"""Scores: masked reconstruction against a trivial baseline (in normalised units), and the
usual downstream metrics (overall accuracy, macro-F1, confusion matrix, IoU)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .inputs import resolve_modality
from .modalities import Modality


def hidden_mse(
    x: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor, modality: Modality
) -> float:
    """Mean squared error on hidden pixels, each band divided by its std (so bands weigh alike).

    x, prediction: [B, C, H, W] in sensor units; mask: [B, 1, H, W], 1 = hidden.
    """
    std = torch.tensor(modality.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    err = ((prediction - x) / std) ** 2
    return err[mask.expand_as(x).bool()].mean().item()


def visible_mean_baseline(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial reconstruction: every hidden pixel = the per-band mean of the visible pixels."""
    visible = (1 - mask).expand_as(x)
    mean = (x * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True)
    return mean.expand_as(x)


@torch.no_grad()
def reconstruction_scores(
    model, x: torch.Tensor, modality: str | Modality, mask_ratio: float = 0.75, seed: int = 0
) -> dict[str, float]:
    """Hidden-pixel MSE of the model's reconstruction and of the trivial baseline, same mask."""
    m = resolve_modality(modality, model.modalities)
    image, mask = model.reconstruct(x, m, mask_ratio=mask_ratio, seed=seed)
    return {
        "model_mse": hidden_mse(x, image, mask, m),
        "baseline_mse": hidden_mse(x, visible_mean_baseline(x, mask), mask, m),
    }


# ---------------------------------------------------------------- downstream
def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = None
) -> np.ndarray:
    """[true class, predicted class] counts."""
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    keep = target != ignore_index if ignore_index is not None else np.ones_like(target, bool)
    index = target[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def classification_scores(pred: np.ndarray, target: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Overall accuracy, macro-F1 (classes absent from both target and prediction are skipped)
    and the confusion matrix."""
    cm = confusion_matrix(pred, target, num_classes)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros_like(tp), where=present)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "confusion": cm.tolist(),
        "count": int(cm.sum()),
    }


def segmentation_scores(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int | None = 255
) -> dict[str, Any]:
    """Mean IoU over classes present in target or prediction, per-class IoU, pixel accuracy."""
    cm = confusion_matrix(pred, target, num_classes, ignore_index)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    return {
        "miou": float(np.nanmean(iou)) if (union > 0).any() else 0.0,
        "iou": [None if np.isnan(v) else float(v) for v in iou],
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
    }


def ranking_scores(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    """How well scores ``s`` rank the positives of ``y`` (0/1): AUROC, average precision and
    the best F1 over thresholds; equal scores count together, NaN ranks last."""
    s = np.where(np.isfinite(s), s, -np.inf)
    order = np.argsort(-s, kind="stable")
    y, s = y[order].astype(np.float64), s[order]
    tp, fp = np.cumsum(y), np.cumsum(1 - y)
    last = np.r_[s[1:] != s[:-1], True]  # the end of each run of equal scores
    tp, fp = tp[last], fp[last]
    recall, fpr = tp / tp[-1], fp / fp[-1]
    precision = tp / (tp + fp)
    auroc = float(np.trapezoid(np.r_[0, recall], np.r_[0, fpr]))
    ap = float(np.sum(np.diff(np.r_[0, recall]) * precision))
    f1 = float(np.max(2 * precision * recall / np.maximum(precision + recall, 1e-12)))
    return auroc, ap, f1
