"""Synthetic cut-on-beat data: (video, music, parse) triples for training, calibration and tests."""
