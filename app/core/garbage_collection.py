"""The garbage collector's settings for a process that serves requests for hours.

CPython's default collects the youngest generation every 700 new container objects. A
1,000-record usage batch makes tens of thousands that live until its answer is sent, so each
batch paid for dozens of collections that found nothing to free, and promoted its records
into older generations whose collections then walked them again, along with everything
imported at start-up. Measured with `python -m bench.instructions "POST usage/batch/" 60`
(CPU per request, alternating runs): about a third of a batch's CPU went to the collector.

So, once the app has started: what exists then (modules, routes, schemas, pools) is frozen,
never walked again by a collection, and the youngest generation holds 10,000 objects before
it is collected. Cycles are still found and freed; only less often, and among fewer objects.
"""

import gc

YOUNGEST_GENERATION_THRESHOLD = 10_000


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, middle, oldest)
