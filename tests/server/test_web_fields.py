"""The shared request fields: a searched, paged list's query (the overview's and the inventory's)."""

from __future__ import annotations

from pydantic import Field

from server.web.fields import SEARCH_MAX, ListQuery


class _Filtered(ListQuery):
    tag: str = Field(default="", max_length=64)


def test_a_too_long_search_is_cut_and_says_so() -> None:
    long = ListQuery(q="x" * (SEARCH_MAX + 5))
    assert long.search == "x" * SEARCH_MAX and long.cut
    assert ListQuery(q="x" * SEARCH_MAX).cut is False


def test_page_links_keep_the_search_and_the_filters_that_are_set() -> None:
    assert ListQuery().link("/admin/devices", 2) == "/admin/devices?page=2"
    assert ListQuery(q="web 1", page=3).link("/admin/devices", 2) == "/admin/devices?q=web+1&page=2"
    assert _Filtered(tag="a&b").link("/", 4) == "/?tag=a%26b&page=4"
    assert _Filtered(q="z" * (SEARCH_MAX + 1), tag="t").link("/", 1) == f"/?q={'z' * SEARCH_MAX}&tag=t&page=1"
