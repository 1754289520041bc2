"""Forecasting a numeric CSV column with autoregressive models (the curriculum's first sequence-model
lesson): predict x_t from the window x_{t-tau..t-1}, and see how errors compound over k steps.

    config.py   TimeSeriesConfig (on TrainArgs)
    series.py   the synthetic sine series; one checked numeric column of a CSV; the train/test split
    windows.py  lag windows, the k-step feature matrix, forecasts and their scores
    train.py    training on train/loop.py (one epoch a step), checkpoint through train/checkpoint
    legacy.py   resuming runs saved in the older per-epoch format
    predict.py  loading a run (core/rundir) and forecasting a CSV with it
    outputs.py  model.safetensors, forecast.json, predictions.csv, forecast.png
"""
