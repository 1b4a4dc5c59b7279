"""Data: synthetic HPA-like samples, image reading, TFRecords and input pipelines."""
