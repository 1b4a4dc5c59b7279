"""The built-in HPA-like data: fields of cells, one drawn pattern per class, real label sets.

>>> from hpa_keras.synthetic import DemoDataSettings, make_demo_data
>>> make_demo_data("demo-data", DemoDataSettings(num_samples=200, image_size=128))
"""

from hpa_keras._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "DemoDataSettings": "generator",
        "make_demo_data": "generator",
        "render_sample": "generator",
        "sample_label_sets": "label_sampler",
        "PATTERNS": "protein_patterns",
    },
)
