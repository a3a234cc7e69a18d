"""Which model a name or file means: model sources (hub ids, folders, single files, GGUF), kinds and shipped configs."""
