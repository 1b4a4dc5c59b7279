"""Data-parallel scaling of the DenseNet121 512 px recipe on paper (no GPU needed).

    python scripts/estimate_scaling.py

Per GPU: the recipe's images per second on one A100 80GB from
``estimate_recipe_cost.py`` (anchored on NVIDIA's published ResNet-50 rate,
see there). Per step, data parallelism adds one all-reduce of the float32
gradients (Keras keeps float32 variables under mixed precision): a ring
all-reduce moves 2 (N - 1) / N times the gradient bytes through each GPU's
slowest link (Patarasuk and Yuan 2009; NCCL's "bus bandwidth"). Counted
without overlap with the backward pass (XLA and NCCL overlap part of it),
so the efficiencies are a floor. Links at their nominal one-direction
bandwidth: NVLink 3 on an A100 SXM board 300 GB/s (600 GB/s both ways,
NVIDIA A100 datasheet), PCIe 4.0 x16 32 GB/s, 100 and 25 Gb/s Ethernet
between hosts.

The input is the other side: N GPUs at the per-GPU rate need N times the
images decoded and augmented. The CPU cost per image is this project's
measurement (``benchmarks/bench_data_service.py``: 13.1 ms of CPU per real
512 px four-channel PNG field, cropped and augmented), scaled by area to the
recipe's 768 px fields; raw records need their bytes read instead.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from estimate_recipe_cost import anchor_multiply_adds_per_second, recipe_cost  # noqa: E402

RECIPE = "densenet121-512"
LINKS = {  # bytes per second, one direction, nominal
    "NVLink 3 (A100 SXM, one host)": 300e9,
    "PCIe 4.0 x16 (one host)": 32e9,
    "100 Gb/s Ethernet (hosts)": 12.5e9,
    "25 Gb/s Ethernet (hosts)": 3.125e9,
}
GPUS = (2, 4, 8, 16, 32)
PNG_CPU_SECONDS_AT_512 = 0.0131  # measured here, see the docstring


def main() -> int:
    cost = recipe_cost(RECIPE, anchor_multiply_adds_per_second())
    rate, batch, parameters = cost["images_per_second"], cost["batch"], cost["parameters"]
    field = cost["field"]
    step = batch / rate
    gradient_bytes = 4 * parameters
    print(
        f"{RECIPE}: {cost['model']} at {cost['input']} px crops of {field} px fields, batch "
        f"{batch} per GPU, ~{rate:.0f} images/s on one A100 ({cost['bound']} bound), a step "
        f"{step * 1000:.0f} ms; {parameters / 1e6:.1f} M parameters, "
        f"{gradient_bytes / 2**20:.0f} MiB of float32 gradients a step"
    )
    print()
    header = f"{'link':<32}" + "".join(f"{n:>8} GPUs" for n in GPUS)
    print("scaling efficiency (images/s of N GPUs over N x one GPU's), no overlap:")
    print(header)
    for name, bandwidth in LINKS.items():
        cells = []
        for count in GPUS:
            if "one host" in name and count > 8:  # a host has at most 8 such GPUs
                cells.append(f"{'-':>13}")
                continue
            reduce_seconds = 2 * (count - 1) / count * gradient_bytes / bandwidth
            cells.append(f"{step / (step + reduce_seconds):>13.2f}")
        print(f"{name:<32}" + "".join(cells))
    print()
    cpu_per_image = PNG_CPU_SECONDS_AT_512 * (field / 512) ** 2
    raw_bytes = field * field * 4
    print(f"input to keep N GPUs busy at {rate:.0f} images/s each:")
    print(f"{'GPUs':>6}{'images/s':>10}{'CPU cores (PNG)':>17}{'raw records GB/s':>18}")
    for count in (1, *GPUS):
        images = count * rate
        print(f"{count:>6}{images:>10.0f}{images * cpu_per_image:>17.0f}"
              f"{images * raw_bytes / 1e9:>18.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
