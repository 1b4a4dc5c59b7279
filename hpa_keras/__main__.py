"""``python -m hpa_keras`` runs the command-line interface."""

from hpa_keras.cli import main

raise SystemExit(main())
