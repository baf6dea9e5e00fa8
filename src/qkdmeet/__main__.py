import sys

from qkdmeet.cli import main

sys.exit(main())
