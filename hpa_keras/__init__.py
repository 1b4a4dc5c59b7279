"""hpa-keras: protein localization in Human Protein Atlas images with Keras 3."""

__version__ = "0.1.0"
