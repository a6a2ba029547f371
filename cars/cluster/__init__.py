"""The Ray layer: starting Ray, planning resources, where the training loop runs (a Ray Train
worker or a trial's own process) and the loop itself, one run, the one trial path, the Tune
sweep and its confirmation. The only part of the package that imports Ray at its top, and only
through Ray's public API."""
