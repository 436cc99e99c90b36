"""``python -m policy_engine``: the same as the ``policy-engine`` command."""

import sys

from policy_engine.cli import main

sys.exit(main())
