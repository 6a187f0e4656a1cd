"""Who may schedule, and the replicated truth about every job.

``api`` holds the interfaces (``Ledger``, ``Leadership``); ``ledger`` the pure
state machine; ``raft_state`` the Raft backend (the only pysyncobj user);
``bully`` and ``sqlite_ledger`` the fallback.
"""
