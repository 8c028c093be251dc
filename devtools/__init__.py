"""Launchers for development, tests and benchmarks. Not imported by the application."""
