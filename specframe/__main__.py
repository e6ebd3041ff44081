"""`python -m specframe ...` = `specframe ...`."""
import sys

from specframe.cli import main

sys.exit(main())
