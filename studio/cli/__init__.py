"""The command line (`python -m studio …`), on the same Studio façade as the UI and the API."""
