"""`xrseg demo`: the engine and a client on loopback, streaming a sequence with scripted gaze."""
