# a python-backend model: a fixture, never run
