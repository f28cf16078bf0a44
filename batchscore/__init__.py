"""batchscore: score large image archives with a trained model on many ranks/GPUs."""

__version__ = "0.1.0"
