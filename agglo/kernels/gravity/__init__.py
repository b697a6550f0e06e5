"""The gravity web: the kernels whose bits make the gravity model's cube.

- ``terms``: deterrence and the gravity term, in float64 and in the float32 base-2 form;
  ``fastexp``: the float32 2^x that vectorises.
- ``lanes``: a row's terms summed in 32 float64 lanes in a fixed order (one scenario at a time);
  ``batch_sums``: the same sums with the scenario loop innermost (batches of 8 or more).
- ``origin``, ``inflow``: the two passes; ``cores``: the best reachable core.

Their bit contract (what every change here must keep; tests/test_kernels.py checks it, the
README's cubes show it byte for byte):

1. A scenario's results depend on the network and its own parameters only: never on the batch
   size, its place in the batch, the other scenarios, the executor or the thread count.
2. Every term is computed with the same IEEE operations in both loop shapes: no fast-math, the
   exp's FMAs written out, float32 where docs/model.md's tolerance allows and float64 sums.
3. A row's terms go into 32 float64 lanes by pair position, in a fixed order, summed in a
   fixed order; a scenario that does not reach a pair adds +0.0, which leaves its lane as it is.
4. Parallel loops run over fixed chunks of towns, never split one town's sum.
5. The best core is chosen in float64 with docs/model.md's tie rule (lower town index).
"""
