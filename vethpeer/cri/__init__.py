"""Minimal CRI runtime.v1 client bindings (generated from api.proto)."""
