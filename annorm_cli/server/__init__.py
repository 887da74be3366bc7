"""`annorm serve`: a local web page and JSON/PNG API over the Python API (inpaint, generate,
layouts, models). Needs the optional extra `serve` (FastAPI, uvicorn, python-multipart); only
the CLI imports this package."""
