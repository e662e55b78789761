"""`vigil demo` / `make demo`: the whole loop on embedded defaults, narrated (story.py runs it).

It uses every component the way a user would (train, convert, serve, monitor, lifecycle,
Prometheus), so it sits above them, beside the `vigil` command.
"""
