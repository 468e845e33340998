"""Analysis layer: fidelity, decoding, anomaly injection and detection, interpretability. Functions
and sklearn-style estimators on arrays and a trained model; no file paths."""
