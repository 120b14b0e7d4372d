"""`python -m numa_balloon_cli`, the same as the `numa-balloon` command."""

from numa_balloon_cli.main import app

app(prog_name="numa-balloon")
