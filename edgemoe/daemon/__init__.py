"""The sensor-loop daemon: frames in over sockets, availability -> mask -> runtime -> sinks.

No torch here: this box runs on the robot next to the engines.
"""
