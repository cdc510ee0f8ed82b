"""``draco demo``: the main job end to end on built-in defaults, on any fresh install."""
