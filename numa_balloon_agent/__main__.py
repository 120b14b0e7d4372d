import sys

from numa_balloon_agent.cli import main

sys.exit(main())
