"""Training recipes shipped as YAML files (read by :mod:`hpa_keras.training.recipes`).

A package of its own so that setuptools installs its ``*.yaml`` files as package data
and ``importlib.resources`` finds them in a wheel as in the checkout.
"""
