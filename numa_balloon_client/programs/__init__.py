"""What the programs built on the client share: exit codes and one-line errors (`exits`), log
lines (`logs`) and the agents' cycle loop with its backoff (`loop`).

The command line (`numa-balloon`), the host agent and the guest agent each install with the
client and nothing of the service, so what they have in common lives here.
"""
