"""Progress that tells the truth: the first step (which compiles) is shown on its own, then the bar.

A jitted kernel compiles on its first call, which on a CPU can take longer than every later call
together; a bar that counts that call like the others sits at 0 % and then shows an ETA computed
from a meaningless rate. ``steps_with_progress`` runs the first step under its own line
("Sec. 6.1 sweep: compiling + first 500 problem(s): 00:31"), then opens the bar at the first step's size, so
the rate and the ETA count only steps that did not compile.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence


def steps_with_progress(work: Callable[[int], object], sizes: Sequence[int], desc: str, unit: str = "problem",
                        enabled: bool = True) -> Iterator[object]:
    """Run ``work(0), work(1), ...`` and yield their results, with a two-phase progress display.

    Args:
      work: the k-th step; its first call is assumed to compile.
      sizes: (steps,) units each step completes (e.g. problems per chunk).
      desc: the bar's label.  unit: what the bar counts.  enabled: False shows nothing.

    Yields:
      ``work(k)`` for k = 0, 1, ..., len(sizes) - 1.
    """
    from tqdm.auto import tqdm

    with tqdm(total=1, desc=f"{desc}: compiling + first {sizes[0]} {unit}(s)", disable=not enabled,
              bar_format="{desc}: {elapsed}") as first:
        result = work(0)
        first.update(1)
    yield result
    if len(sizes) == 1:
        return
    with tqdm(total=int(sum(sizes)), initial=int(sizes[0]), desc=desc, unit=unit, disable=not enabled) as bar:
        for k in range(1, len(sizes)):
            result = work(k)
            bar.update(int(sizes[k]))
            yield result
