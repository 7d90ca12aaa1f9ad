"""The group-membership target of the engine (``GroupSyncRun``): its reader, planner and writer."""
