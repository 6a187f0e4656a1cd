"""The coordinator's scheduler: a pure ``plan(snapshot)`` and the leader-only loop around it."""
