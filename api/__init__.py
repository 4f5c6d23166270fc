"""Amphora's Python side: the HTTP API and the helpers scripts and tests share."""
