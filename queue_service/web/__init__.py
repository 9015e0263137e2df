"""The queue service over HTTP for browsers: Connect (`connect.py`) and the labelling web app
(`app.py` serves `static/`, built from clients/web by `make web`)."""
