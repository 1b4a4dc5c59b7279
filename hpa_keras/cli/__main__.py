"""``python -m hpa_keras.cli``: the ``hpa-keras`` command."""

import sys

from hpa_keras.cli import console_main

sys.exit(console_main())
