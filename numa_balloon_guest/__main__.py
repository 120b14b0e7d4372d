import sys

from numa_balloon_guest.cli import main

sys.exit(main())
