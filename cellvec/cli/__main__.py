"""``python -m cellvec.cli``: the same as the ``cellvec`` console script."""

import sys

from cellvec.cli import main

sys.exit(main())
