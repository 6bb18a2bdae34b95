"""Downstream tasks on the shared backbone: features, linear probe, kNN, fine-tuning,
segmentation heads, and the datasets and metrics around them."""

from .datasets import (
    LabelError,
    LabelledChips,
    SegmentationScenes,
    load_chips,
    read_labelled_chips,
    read_segmentation_scenes,
)
from .features import extract_features
from .probes import LinearProbe, cross_validate, fit_linear_probe, knn_predict, split_folds
from .tasks import compare_with_random_init, evaluate_head, fit_scene_head, fit_segmentation_head
from .training import predict, train_head

__all__ = [
    "LabelError",
    "LabelledChips",
    "SegmentationScenes",
    "load_chips",
    "read_labelled_chips",
    "read_segmentation_scenes",
    "extract_features",
    "LinearProbe",
    "cross_validate",
    "fit_linear_probe",
    "knn_predict",
    "split_folds",
    "compare_with_random_init",
    "evaluate_head",
    "fit_scene_head",
    "fit_segmentation_head",
    "predict",
    "train_head",
]
