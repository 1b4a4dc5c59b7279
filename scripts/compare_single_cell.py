"""The single-cell demo's test mAP over several runs: mean, spread and each run.

    for seed in 0 1 2; do for pooling in none max; do
      hpa-keras demo --single-cell --seed $seed --cell-pooling $pooling --out sc-$pooling-$seed
    done; done
    python scripts/compare_single_cell.py sc-*/single_cell_results.json

Rows are the cell run's pooling and each score of ``test_map``; columns the
mean and standard deviation over the seeds and the values seed by seed.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path)
    arguments = parser.parse_args()
    table = defaultdict(dict)
    weights = defaultdict(dict)
    for path in arguments.results:
        results = json.loads(path.read_text())
        plan = results["plan"]
        seed, pooling = plan["data"]["seed"], plan["cell_pooling"]
        weights[pooling][seed] = results["mix_weight"]
        for name, value in results["test_map"].items():
            key = "cell run + field run (W chosen on validation)" if name.startswith(
                "cell run + field run") else name  # fmt: skip
            table[(pooling, key)][seed] = value
    print(f"{'cell pooling':12} {'submission':46} {'mean':>6} {'sd':>6}  by seed")
    for (pooling, name), by_seed in sorted(table.items()):
        values = np.array([by_seed[seed] for seed in sorted(by_seed)])
        seeds = " ".join(f"{seed}: {by_seed[seed]:.3f}" for seed in sorted(by_seed))
        spread = values.std(ddof=1) if len(values) > 1 else 0.0
        print(f"{pooling:12} {name:46} {values.mean():6.3f} {spread:6.3f}  {seeds}")
    for pooling, by_seed in sorted(weights.items()):
        print(
            f"W chosen ({pooling}): "
            + ", ".join(f"seed {s}: {w:g}" for s, w in sorted(by_seed.items()))
        )


if __name__ == "__main__":
    main()
