"""Fields as microscopes write them: OME-TIFF and OME-Zarr files read through bioio, and the
per-channel files the rest of the package reads, as one kind of field for ``annotate``.

The owner of the OME formats: every OME-TIFF or OME-Zarr the package opens is opened here
(``bioio`` with the ``bioio-ome-tiff`` and ``bioio-ome-zarr`` readers, the ``annotate``
extra). A file's channels carry names its acquisition software gave them ("DAPI",
"Alexa 488"); a *channel map* says which is which of the four HPA stains
(``DAPI=blue,Tubulin=red,GFP=green,Calreticulin=yellow``). A file of several scenes (the
fields of a well, or of a plate, in one file) gives one field per scene.

Pixel sizes: the HPA's images are 0.08 um per pixel at 2048 px (the 2018 challenge's
512 px fields are the same fields shrunk fourfold). A field's physical pixel size comes
from the OME metadata, or ``--pixel-size``; per-channel files carry none and are taken to
span an HPA field (their longer side 2048 px at 0.08 um), as ``segment`` takes them.
:func:`working_planes` brings every field to one *working scale*, 0.32 um per pixel (an
HPA field shrunk to 512 px, the scale the segmenter's lengths are set in), where quality
control and segmentation measure lengths in micrometres whatever the camera.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from hpa_keras.classes import CHANNELS
from hpa_keras.data.images import index_image_folder, read_channel, stain_plane
from hpa_keras.errors import InputError

HPA_PIXEL_SIZE = 0.08  # um per pixel of the HPA's 2048 px confocal fields
HPA_FIELD_SIDE = 2048  # pixels of such a field
WORKING_PIXEL_SIZE = 0.32  # um: an HPA field shrunk to 512 px (segmentation's scale)
OME_SUFFIXES = (".ome.tif", ".ome.tiff", ".ome.zarr")
INSTALL_HINT = "pip install 'hpa-keras[annotate]'"


@dataclass(frozen=True)
class FieldSource:
    """Where one field comes from: per-channel files, or a scene of an OME file."""

    field_id: str
    kind: str  # "channels" (per-channel files) or "ome"
    paths: dict = field(default_factory=dict)  # stain -> file, for "channels"
    path: str | None = None  # the OME file, for "ome"
    scene: int = 0

    @property
    def location(self) -> str:
        """Where the field is, as tables and pages name it: the OME file, or the
        per-channel files' folder and Id."""
        if self.kind == "ome":
            return str(self.path)
        return str(Path(next(iter(self.paths.values()))).parent / self.field_id)

    @property
    def name(self) -> str:
        """The file (and scene) errors name."""
        if self.kind == "ome":
            return f"{self.path} (scene {self.scene})" if self.scene else str(self.path)
        return str(next(iter(self.paths.values())))


@dataclass
class Field:
    """One field's stains at full resolution, and its physical pixel size.

    Attributes:
        source: where it was read from.
        stains: ``{stain: (H, W) uint8 or uint16}`` for the stains the field has.
        pixel_size: micrometres per pixel.
        pixel_size_from: where the pixel size came from (``metadata``, ``--pixel-size``,
            ``HPA field``).
        notes: what reading did that a user should know (a z-stack projected).
    """

    source: FieldSource
    stains: dict
    pixel_size: float
    pixel_size_from: str
    notes: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.stains.values())).shape

    @property
    def dtype(self):
        return next(iter(self.stains.values())).dtype


def is_ome_path(path: str | os.PathLike) -> bool:
    """Whether a path names an OME-TIFF or OME-Zarr by its suffix."""
    return str(path).lower().rstrip("/").endswith(OME_SUFFIXES)


def parse_channel_map(text: str | None) -> dict[str, str] | None:
    """``"DAPI=blue,GFP=green"`` as ``{"DAPI": "blue", "GFP": "green"}``; None for None.

    Refused: an entry without ``=``, an unknown stain, a stain or a channel named twice.
    """
    if text is None:
        return None
    mapping, stains = {}, set()
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, equals, stain = entry.rpartition("=")
        name, stain = name.strip(), stain.strip().lower()
        if not equals or not name:
            raise InputError(f"--channels entry {entry!r}: expected NAME=STAIN, as DAPI=blue")
        if stain not in CHANNELS:
            raise InputError(
                f"--channels entry {entry!r}: {stain!r} is not a stain; the stains are "
                f"{', '.join(CHANNELS)}"
            )
        if stain in stains:
            raise InputError(f"--channels gives two channels for {stain}")
        if name in mapping:
            raise InputError(f"--channels names channel {name!r} twice")
        mapping[name] = stain
        stains.add(stain)
    if not mapping:
        raise InputError("--channels is empty; expected NAME=STAIN entries, as DAPI=blue")
    return mapping


def _bioio():
    try:
        import bioio
        import bioio_ome_tiff
        import bioio_ome_zarr
    except ImportError as error:
        raise InputError(
            f"reading OME-TIFF and OME-Zarr files needs bioio ({error.name} is not "
            f"installed): {INSTALL_HINT}"
        ) from None
    return bioio, bioio_ome_tiff, bioio_ome_zarr


def _open_ome(path: Path):
    bioio, ome_tiff, ome_zarr = _bioio()
    reader = ome_zarr.Reader if str(path).lower().rstrip("/").endswith(".zarr") else ome_tiff.Reader
    try:
        return bioio.BioImage(path, reader=reader)
    except Exception as error:  # the readers raise many kinds for a file they cannot read
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{path}: not a readable OME file ({reason[:200]})") from None


def _scene_id(path: Path, scene: int, scenes: int) -> str:
    stem = re.sub(r"\.ome\.(tiff?|zarr)$", "", path.name.rstrip("/"), flags=re.IGNORECASE)
    return f"{stem}_s{scene}" if scenes > 1 else stem


def list_fields(images: str | os.PathLike) -> list[FieldSource]:
    """Every field of ``images``: an OME file (each scene a field), or a folder of OME
    files and/or per-channel files (``<Id>_<stain>.png|jpg|tif``, or a folder per field).

    Raises InputError for a path that is neither, a folder with no field, and two fields
    of the same Id.
    """
    images = Path(images)
    if not images.exists():
        raise InputError(f"{images}: no such file or folder")
    if is_ome_path(images):
        return _ome_sources(images)
    if not images.is_dir():
        raise InputError(
            f"{images}: not an OME-TIFF (.ome.tif), OME-Zarr (.ome.zarr) or a folder of fields"
        )
    sources = []
    for path in sorted(images.iterdir()):
        if is_ome_path(path):
            sources.extend(_ome_sources(path))
    channel_files = index_image_folder(images)
    sources.extend(
        FieldSource(field_id=field_id, kind="channels", paths=dict(paths))
        for field_id, paths in sorted(channel_files.items())
    )
    if not sources:
        raise InputError(
            f"{images}: no fields: no OME-TIFF or OME-Zarr file and no <Id>_<stain> channel files"
        )
    seen = {}
    for source in sources:
        if source.field_id in seen:
            raise InputError(
                f"{source.name}: field Id {source.field_id!r} is also {seen[source.field_id]}"
            )
        seen[source.field_id] = source.name
    return sources


def _ome_sources(path: Path) -> list[FieldSource]:
    image = _open_ome(path)
    scenes = len(image.scenes)
    return [
        FieldSource(_scene_id(path, scene, scenes), "ome", path=str(path), scene=scene)
        for scene in range(scenes)
    ]


def read_field(
    source: FieldSource,
    channel_map: dict[str, str] | None = None,
    pixel_size: float | None = None,
) -> Field:
    """One field's stains and pixel size; InputError naming the file and what it holds.

    Args:
        source: from :func:`list_fields`.
        channel_map: ``{file channel name: stain}`` for OME files; without one, channels
            named after the stains (red, green, blue, yellow, in any case) are taken.
        pixel_size: micrometres per pixel, over the metadata's (``--pixel-size``).
    """
    if pixel_size is not None and not 0.005 <= pixel_size <= 10:
        raise InputError(f"--pixel-size {pixel_size}: expected micrometres, 0.005 to 10")
    if source.kind == "ome":
        return _read_ome(source, channel_map, pixel_size)
    stains = {}
    for stain, path in source.paths.items():
        array = read_channel(path, allow_colour=True)
        if array.ndim == 3:
            array, _ = stain_plane(array, stain, path)
        stains[stain] = array
    _check_planes(stains, source)
    if pixel_size is not None:
        return Field(source, stains, pixel_size, "--pixel-size")
    side = max(next(iter(stains.values())).shape)
    return Field(source, stains, HPA_PIXEL_SIZE * HPA_FIELD_SIDE / side, "HPA field")


def _check_planes(stains: dict, source: FieldSource) -> None:
    shapes = {stain: plane.shape for stain, plane in stains.items()}
    dtypes = {stain: plane.dtype for stain, plane in stains.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{stain} {shape[1]}x{shape[0]}" for stain, shape in shapes.items())
        raise InputError(f"{source.name}: its channels differ in size ({described})")
    if len(set(dtypes.values())) > 1:
        described = ", ".join(f"{stain} {dtype}" for stain, dtype in dtypes.items())
        raise InputError(f"{source.name}: its channels differ in bit depth ({described})")
    dtype = next(iter(dtypes.values()))
    if dtype not in (np.uint8, np.uint16):
        raise InputError(
            f"{source.name}: pixel type {dtype}; annotate reads 8- and 16-bit integer images"
        )


def _stain_of_channels(names: list[str], channel_map, source: FieldSource) -> dict[str, int]:
    """``{stain: channel index}`` for a file whose channels are ``names``."""
    listed = ", ".join(repr(name) for name in names)
    if channel_map is None:
        by_name = {name.lower(): index for index, name in enumerate(names)}
        found = {stain: by_name[stain] for stain in CHANNELS if stain in by_name}
        if not found:
            raise InputError(
                f"{source.name}: its channels are {listed}; say which stain each is with "
                '--channels, as --channels "DAPI=blue,Tubulin=red,GFP=green,'
                'Calreticulin=yellow"'
            )
        return found
    unknown = [name for name in channel_map if name not in names]
    if unknown:
        raise InputError(
            f"{source.name}: has no channel {unknown[0]!r} (--channels); its channels are {listed}"
        )
    return {stain: names.index(name) for name, stain in channel_map.items()}


def _read_ome(source: FieldSource, channel_map, pixel_size) -> Field:
    path = Path(source.path)
    image = _open_ome(path)
    try:
        image.set_scene(source.scene)
        dims = image.dims
        names = [str(name) for name in (image.channel_names or [])]
    except Exception as error:
        raise InputError(f"{source.name}: cannot read its dimensions ({error})") from None
    if len(names) != dims.C:
        names = [f"C{index}" for index in range(dims.C)]
    if dims.T > 1:
        raise InputError(
            f"{source.name}: holds {dims.T} time points; annotate reads still fields (one "
            "time point a file: save each as its own scene or file)"
        )
    indices = _stain_of_channels(names, channel_map, source)
    notes = []
    try:
        stack = np.asarray(image.get_image_data("CZYX", T=0))
    except Exception as error:
        raise InputError(f"{source.name}: cannot read its pixels ({error})") from None
    if stack.shape[1] > 1:
        notes.append(f"a z-stack of {stack.shape[1]} planes, projected to its maximum")
    planes = stack.max(axis=1)
    stains = {stain: np.ascontiguousarray(planes[index]) for stain, index in indices.items()}
    _check_planes(stains, source)
    if pixel_size is not None:
        return Field(source, stains, pixel_size, "--pixel-size", notes)
    sizes = image.physical_pixel_sizes
    if not sizes.X or not sizes.Y:
        raise InputError(
            f"{source.name}: its metadata give no physical pixel size; give it with "
            "--pixel-size (micrometres per pixel; the HPA's fields are 0.08)"
        )
    if abs(sizes.X - sizes.Y) > 0.01 * max(sizes.X, sizes.Y):
        raise InputError(
            f"{source.name}: pixels of {sizes.X} x {sizes.Y} um are not square; annotate "
            "reads square pixels (resample the file, or give --pixel-size to take them as square)"
        )
    return Field(source, stains, float(sizes.X), "metadata", notes)


def working_factor(pixel_size: float) -> float:
    """How much a field of ``pixel_size`` um shrinks (or grows) to the working scale."""
    return pixel_size / WORKING_PIXEL_SIZE


def working_planes(fld: Field) -> dict[str, np.ndarray]:
    """Every stain of a field as float32 in [0, 1] at the working scale (0.32 um a pixel):
    shrunk by area interpolation (each working pixel the mean of those it covers), or
    enlarged bilinearly for a field coarser than that."""
    factor = working_factor(fld.pixel_size)
    height, width = fld.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    top = 255.0 if fld.dtype == np.uint8 else 65535.0
    planes = {}
    for stain, plane in fld.stains.items():
        unit = plane.astype(np.float32) / top
        if size != (width, height):
            interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
            unit = cv2.resize(unit, size, interpolation=interpolation)
        planes[stain] = unit
    return planes
