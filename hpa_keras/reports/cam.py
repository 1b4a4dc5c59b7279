"""The Grad-CAM picture: each explained class's map over the composite and every channel."""

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from hpa_keras.classes import CHANNEL_STAINS, CHANNELS, CLASS_NAMES
from hpa_keras.reports.figures import plt
from hpa_keras.reports.samples import composite, stretch

HEAT_COLOURS = "jet"
OUTLINE_LEVELS = (0.25, 0.5, 0.75)  # the map's outlines drawn over the colour composite


def cam_figure(
    image: np.ndarray, maps: np.ndarray, classes, probabilities, title: str, class_names=CLASS_NAMES
):
    """A row per class: the map outlined over the colour composite, then over each channel.

    Each channel is shown in grey, so that the map's colours (jet, opacity
    0.6 x the map, so cold regions stay see-through) cannot be confused with
    a stain's own colour: on the blue and yellow channels in their stain
    colours, jet's blues and yellows would vanish. The composite keeps its
    colours and gets the map as white outlines at 0.25, 0.5 and 0.75 of its
    maximum. A colour bar reads the map's values.
    """
    planes = {name: image[..., index] for index, name in enumerate(CHANNELS)}
    backgrounds = [("composite (outlines: map 0.25, 0.5, 0.75)", composite(planes))] + [
        (f"{name}: {CHANNEL_STAINS.get(name, name)}", stretch(planes[name])) for name in CHANNELS
    ]
    rows = len(classes)
    figure, axes = plt.subplots(
        rows,
        len(backgrounds),
        figsize=(2.9 * len(backgrounds) + 0.9, 2.9 * rows + 0.7),
        squeeze=False,
        layout="constrained",
    )
    colours = plt.get_cmap(HEAT_COLOURS)
    for row, (index, heat) in enumerate(zip(classes, maps, strict=True)):
        overlay = colours(heat)
        overlay[..., 3] = 0.6 * heat
        for column, (name, background) in enumerate(backgrounds):
            axis = axes[row, column]
            if column == 0:
                axis.imshow(background)
                if heat.max() > OUTLINE_LEVELS[0]:
                    axis.contour(
                        heat, levels=OUTLINE_LEVELS, colors="white", linewidths=(0.6, 1.0, 1.6)
                    )
            else:
                axis.imshow(background, cmap="gray", vmin=0.0, vmax=1.0)
                axis.imshow(overlay)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=8)
        axes[row, 0].set_ylabel(
            f"{index} {class_names[index]}\np = {probabilities[index]:.2f}", fontsize=9
        )
    scale = ScalarMappable(Normalize(0.0, 1.0), colours)
    figure.colorbar(
        scale, ax=axes, fraction=0.025, pad=0.01, label="Grad-CAM (1: the map's maximum)"
    )
    figure.suptitle(title, fontsize=10)
    return figure
