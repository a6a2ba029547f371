"""The Ray-free learning core: model, weights, optimisation, the per-epoch engine, features,
where a worker runs (placement), checkpoints and Grad-CAM. Nothing here imports Ray, so a GPU
check runs it without Ray."""
