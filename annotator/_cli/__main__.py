"""``python -m annotator._cli``: the same as the ``cellvec`` console script."""

import sys

from annotator._cli import main

sys.exit(main())
