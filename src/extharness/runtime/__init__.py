"""The floor every other package stands on: the cache folder and its keys, file locks, progress
output. It imports nothing else from extharness but ``errors``, so any module may use it without
pulling in image acquisition (and without an import circle)."""
