"""Generative adversarial networks (`dlcli gan`), split by role:

    data.py      built-in 2-D mixtures, array files, image folders -> GanData
    models.py    MLP and DCGAN generators and discriminators, spectral norm, EMA of G
    losses.py    minimax, non-saturating, WGAN-GP and hinge losses, each as its formula
    metrics.py   VEEGAN mode coverage for mixtures; digits class coverage
    pictures.py  2-D density pictures, image grids, the training GIF
    train.py     GanConfig and train(cfg, force, resume, on_progress)
    sample.py    sample and evaluate a trained run
"""
