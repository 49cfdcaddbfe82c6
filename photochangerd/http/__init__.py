"""Thin HTTP layer (Quart blueprints): parse, call services, map errors to the JSON shape."""
