"""The user-attribute target of the engine (``SyncRun``) and the one-user update (``update_one_user``):
its reader (Omni's users, live or from the snapshot), planner and writer."""
