"""Generative adversarial networks (`dlcli gan`), split by role:

    data.py      built-in 2-D mixtures, array files, image folders -> GanData
    models.py    MLP and DCGAN generators and discriminators, spectral norm, EMA of G
    losses.py    minimax, non-saturating, WGAN-GP and hinge losses, each as its formula
    metrics.py   VEEGAN mode coverage for mixtures; digits class coverage
    pictures.py  2-D density pictures, image grids, the training GIF
    config.py    GanConfig and the names its keys take (torch-free: `--help` reads it)
    build.py     what a config builds: the data, G and D, the noise z, packed batches
    evaluate.py  coverage of G's samples and the snapshots of G_ema (the training GIF's frames)
    train.py     train(cfg, force, resume, on_progress): the GAN step on the shared training loop
    sample.py    sample and evaluate a trained run
"""
