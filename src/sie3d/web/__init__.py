"""`sie3d web`: the web page and HTTP API (server.py), its jobs (jobs.py) and what a job does (worker.py)."""
