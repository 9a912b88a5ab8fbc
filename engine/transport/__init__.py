"""Transports turn bytes on a connection into session calls and typed replies into bytes."""
