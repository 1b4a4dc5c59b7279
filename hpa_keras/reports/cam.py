"""The Grad-CAM picture: each explained class's map over the composite and every channel."""

import numpy as np

from hpa_keras.classes import CHANNELS, CLASS_NAMES
from hpa_keras.reports.figures import plt
from hpa_keras.reports.samples import colorize, composite


def cam_figure(
    image: np.ndarray, maps: np.ndarray, classes, probabilities, title: str, class_names=CLASS_NAMES
):
    """A row per class: the composite and each channel, with its map overlaid (jet colours,
    opacity 0.6 x the map)."""
    planes = {name: image[..., index] for index, name in enumerate(CHANNELS)}
    backgrounds = [("composite", composite(planes))] + [
        (name, colorize(planes[name], name)) for name in CHANNELS
    ]
    rows = len(classes)
    figure, axes = plt.subplots(
        rows, len(backgrounds), figsize=(2.9 * len(backgrounds), 2.9 * rows + 0.6), squeeze=False
    )
    for row, (index, heat) in enumerate(zip(classes, maps, strict=True)):
        # Opacity grows with the map, so cold regions stay see-through and show their cells.
        overlay = plt.get_cmap("jet")(heat)
        overlay[..., 3] = 0.6 * heat
        for column, (name, background) in enumerate(backgrounds):
            axis = axes[row, column]
            axis.imshow(background)
            axis.imshow(overlay)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(
            f"{index} {class_names[index]}\np = {probabilities[index]:.2f}", fontsize=9
        )
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure
