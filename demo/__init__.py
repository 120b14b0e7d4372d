"""The local-cluster simulator: host agents and guest balloon drivers, real clients of the API.

`python -m demo --local` starts the service on SQLite and plays the story; `python -m demo --url`
plays it against a running service (docker compose does that). See `demo/story.py`.
"""
