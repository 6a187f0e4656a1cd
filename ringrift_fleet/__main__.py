import sys

from ringrift_fleet.cli import main

sys.exit(main())
