"""The network a sweep runs on: every town's neighbours within the largest cap (built once),
its cache on disk, and the recipe a worker uses to obtain the same network."""
