"""`make bench`: the load, growth and floor benchmark. Not imported by the application."""
