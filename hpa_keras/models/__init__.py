"""Model building blocks and (with the model builders) the model registry."""
