"""Acoustic DeepONet: FDTD ground truth, model, training, evaluation and export."""
