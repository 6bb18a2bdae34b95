"""MAE pre-training of OFA-Net on multi-modal rasters: config, data, training loop (torchrun)."""
