"""Hostile input that needs no service."""
