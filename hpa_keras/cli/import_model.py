"""``hpa-keras import-model``: a published PyTorch model of the HPA as a run folder."""

from hpa_keras.errors import InputError


def add_import_model(commands) -> None:
    command = commands.add_parser(
        "import-model",
        help="turn the HPA's published PyTorch weights (the 2018 winner's DenseNet, SubCell) "
        "into a run folder",
        description="Read a published checkpoint (PyTorch needed for this only: pip install "
        "'hpa-keras[import]') into the same Keras model hpa-keras trains, and write a run "
        "folder predict, evaluate, cam, annotate and fit --init-from take: model.keras, "
        "input.json, thresholds.json (0.5; import.json says why), config.yaml and import.json "
        "(each file read, with its SHA-256).",
    )
    command.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=("hpa-densenet", "subcell"),
        help="hpa-densenet: the 2018 winner's DenseNet121 (CellProfiling/densenet, one .pth); "
        "subcell: a SubCell model (SubCellPortable: encoder.pth and classifier files)",
    )
    command.add_argument("--out", required=True, metavar="RUN", help="the run folder to make")
    command.add_argument("--checkpoint", metavar="FILE", help="hpa-densenet: its model .pth")
    command.add_argument("--encoder", metavar="FILE", help="subcell: the model's encoder.pth")
    command.add_argument(
        "--classifier",
        nargs="+",
        metavar="FILE",
        help="subcell: its classifier .pth files (several are averaged, as SubCell does)",
    )
    command.add_argument(
        "--channels",
        choices=("rybg", "rbg", "ybg", "bg"),
        help="subcell: the stains the encoder reads (default: rybg)",
    )
    command.add_argument(
        "--config",
        metavar="YAML",
        help="subcell: the model's model_config.yaml, for its attention heads (default: 64 "
        "channels a head, ViT's: 12 for ViT-B)",
    )
    command.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load Python objects a checkpoint holds beside its weights (a training script's "
        "args), which the safe load refuses: only for files you trust (unpickling may run code)",
    )
    command.set_defaults(handler=run_import_model)


def run_import_model(arguments) -> None:
    from hpa_keras.workflows.import_model import import_hpa_densenet, import_subcell

    if arguments.source == "hpa-densenet":
        flags = (
            ("--encoder", arguments.encoder),
            ("--classifier", arguments.classifier),
            ("--channels", arguments.channels),
            ("--config", arguments.config),
        )
        given = [flag for flag, value in flags if value]
        if not arguments.checkpoint or given:
            raise InputError(
                "--from hpa-densenet takes --checkpoint FILE"
                + (f" ({', '.join(given)}: for --from subcell)" if given else "")
            )
        record = import_hpa_densenet(
            arguments.checkpoint, arguments.out, allow_pickle=arguments.allow_pickle
        )
    else:
        if not arguments.encoder or not arguments.classifier or arguments.checkpoint:
            raise InputError("--from subcell takes --encoder FILE and --classifier FILE [FILE ...]")
        record = import_subcell(
            arguments.encoder,
            arguments.classifier,
            arguments.out,
            arguments.channels or "rybg",
            arguments.config,
            allow_pickle=arguments.allow_pickle,
        )
    files = record["files"]
    read = (
        [files["checkpoint"]]
        if "checkpoint" in files
        else [files["encoder"], *files["classifiers"]]
    )
    print(
        f"imported {record['model']} into {arguments.out} from "
        + ", ".join(f"{entry['file']} (sha256 {entry['sha256'][:12]})" for entry in read)
    )
    print(f"thresholds: {record['thresholds']}")
