import sys

from exogpu.cli import main

sys.exit(main())
