"""`python -m nfsd_backend` is the same as the `nfsd` console script."""

import sys

from .cli import main

sys.exit(main())
