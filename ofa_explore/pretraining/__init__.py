"""MAE pre-training of OFA-Net on multi-modal rasters: config, data, training loop (torchrun).

python -m ofa_explore.pretraining.train --config CONFIG   (or: ofa pretrain --config CONFIG)
"""
