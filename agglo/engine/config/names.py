"""Names every part of the engine shares: the two modes, the models and decays a mode may
use, and the groups of keys the sweep checks read. Imports nothing: a worker that needs
a mode's name does not import the configuration machinery for it."""

MODES = ("commute", "freight")
MODELS = ("gravity", "attraction", "doubly", "radiation")
DECAYS = ("power", "exponential")
# Keys a mode on a travel-time table does not read (its times are the table's, times time_factor).
TABLE_IGNORES = ("speed_kmh", "circuity")
# Swept keys whose values are text, not numbers.
STRING_KEYS = ("borders",) + tuple(f"{m}.{f}" for m in MODES for f in ("model", "decay"))
# Keys that do not change results: left out when a run is compared with a store.
NOT_RESULTS = ("store", "executor")
