"""``python -m hpa_keras`` runs the command-line interface."""

from hpa_keras.cli import console_main

raise SystemExit(console_main())
