import openseed.engine.trainer as t
t.restore_rng_state = lambda state, device: None
from tests.engine.test_engine_trainer import *
