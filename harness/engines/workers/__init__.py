"""Standalone worker scripts, one per external engine, run by `harness.engines.external` in the ENGINE's Python.

They are files of this package only so that they ship with archscale; they never import archscale (the engine's
environment does not have it): each runs as `ENGINE_PYTHON <worker>.py SPEC.json`, with this folder as its
`sys.path[0]`, so the one shared module is imported as plain `offline_common`.
"""
