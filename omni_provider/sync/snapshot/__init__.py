"""The snapshot a sync keeps of what Omni held after its last run: its file format and its keeper."""
