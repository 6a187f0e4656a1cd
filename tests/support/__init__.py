"""Helpers shared by the test levels: real processes, ports, prerequisites."""
