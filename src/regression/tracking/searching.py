"""Questions to the store answered over all of it: every page of a search, never a silent first one.

MLflow's searches stop at `max_results` (search_runs at 1,000 by default, search_model_versions at
10,000) and say so only by a page token. `every` follows the tokens to the end; callers that need
only the best few let the store rank them (`order_by`) and stop after those few. Every search of
the project goes through `every`, so a test with a small `page_size` runs the code every caller runs.
"""

from collections.abc import Callable, Iterator
from itertools import islice

PAGE_SIZE = 1000  # results asked for per request: MLflow's REST default for runs


def every(search: Callable, page_size: int = PAGE_SIZE, limit: int | None = None, **query) -> Iterator:
    """The results of an MlflowClient search method (`search_runs`, `search_model_versions`, ...)
    called with `query`, page after page; the first `limit` only if given (no page past them is asked for)."""
    size = page_size if limit is None else max(1, min(page_size, limit))

    def pages() -> Iterator:
        token = None
        while True:
            page = search(max_results=size, page_token=token, **query)
            yield from page
            token = page.token
            if not token:
                return
    return pages() if limit is None else islice(pages(), limit)


def count(search, **query) -> int:
    """How many results a search has, without fetching them all.

    MLflow's database stores (sqlite, PostgreSQL, and a server on either) page by offset: the
    token after a page of n is `SearchUtils.create_page_token(n)`. Asking for one result at an
    offset says whether there are more than that many; doubling, then halving, the offset finds
    the count in about 2·log2(count) requests of one result each. A store whose tokens are of
    another kind is counted by reading every page.
    """
    from mlflow.utils.search_utils import SearchUtils

    first = search(max_results=1, **query)
    if not first.token:
        return len(first)
    if first.token != SearchUtils.create_page_token(1):
        return sum(1 for _ in every(search, **query))

    def more_than(offset: int) -> bool:
        return len(search(max_results=1, page_token=SearchUtils.create_page_token(offset), **query)) > 0

    low, high = 1, 2  # more than `low` results (a first page with a token), until `high` says otherwise
    while more_than(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if more_than(middle) else (low, middle)
    return high
