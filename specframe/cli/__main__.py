"""`python -m specframe.cli ...` = `specframe ...`."""
import sys

from specframe.cli import main

sys.exit(main())
